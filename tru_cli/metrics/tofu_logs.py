"""TOFU's per-item logs on disk: tru's own (`tofu_<set>.jsonl`, one file per eval set) and the
original TOFU code's (`eval_log*.json`), read back with every row checked, so that logs which
cannot give metrics (binary, truncated, strings where numbers belong, rows without the statistics)
are refused in one line that names the file instead of aggregating to nonsense. No torch here:
`tru eval eval.from_logs=DIR` checks its input before anything heavy loads."""

from __future__ import annotations

import json
from pathlib import Path

from tru_cli.data.files import read_jsonl, write_jsonl
from tru_cli.errors import TruError

SETS = ("forget", "retain", "real_authors", "world_facts")
# TOFU's own per-item log files, by our set names.
TOFU_LOG_FILES = {"forget": "eval_log_forget.json", "retain": "eval_log.json",
                  "real_authors": "eval_real_author_wo_options.json",
                  "world_facts": "eval_real_world_wo_options.json"}
# Per-item statistics the aggregation reads: numbers (None allowed where a set has no such statistic).
NUMBERS = ("avg_gt_loss", "avg_paraphrased_loss", "rougeL_recall", "rouge1_recall", "mink_40",
           "extraction_strength")


def write_logs(out_dir: Path, sets: dict[str, list[dict]]) -> list[Path]:
    paths = []
    for name, items in sets.items():
        path = Path(out_dir) / f"tofu_{name}.jsonl"
        write_jsonl(path, items)
        paths.append(path)
    return paths


def _from_tofu_file(path: Path) -> list[dict]:
    """Items of one original TOFU log file (maps from item index to value, per statistic)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TruError(f"{path} is not a TOFU log (not UTF-8 JSON: {str(exc).splitlines()[0][:80]}); "
                       f"point eval.from_logs at tru's or TOFU's per-item logs") from None
    if not isinstance(data, dict) or not isinstance(data.get("avg_gt_loss"), dict):
        raise TruError(f"{path} is not a TOFU log (no 'avg_gt_loss' map from item index to loss)")
    keys = ["avg_gt_loss", "avg_paraphrased_loss", "average_perturb_loss", "rougeL_recall",
            "rouge1_recall", "generated_text"]
    index = sorted(data["avg_gt_loss"], key=lambda i: (0, int(i), "") if str(i).isdigit() else (1, 0, str(i)))
    items = []
    for i in index:
        item = {"id": i}
        for key in keys:
            if isinstance(data.get(key), dict) and i in data[key]:
                item[key] = data[key][i]
        if isinstance(item.get("generated_text"), list) and len(item["generated_text"]) == 3:
            item["question"], item["generation"], item["answer"] = item.pop("generated_text")
        if item.get("avg_paraphrased_loss") is None and "average_perturb_loss" in item:
            item["avg_paraphrased_loss"] = item["avg_gt_loss"]
        items.append(item)
    return items


def _read_ours(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise TruError(f"{path} is not UTF-8 text (byte {exc.start}); point eval.from_logs at tru's or "
                       f"TOFU's per-item logs") from None


def check(name: str, items: list[dict], path: Path) -> list[dict]:
    """`items` of set `name`, or a TruError naming the first row whose statistics are unusable."""
    if not items:
        raise TruError(f"{path} holds no items; re-run tru eval to write it again")
    for n, item in enumerate(items, start=1):
        where = f"{path} item {n}"
        if not any(item.get(k) is not None for k in ("avg_gt_loss", "rougeL_recall", "mink_40")):
            raise TruError(f"{where} has none of avg_gt_loss, rougeL_recall, mink_40: not a per-item log "
                           f"of tru eval or TOFU")
        for key in NUMBERS:
            value = item.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise TruError(f"{where}: {key}={value!r} must be a number")
        perturbed = item.get("average_perturb_loss")
        if perturbed is not None and (not isinstance(perturbed, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in perturbed)):
            raise TruError(f"{where}: average_perturb_loss must be a list of numbers, got {perturbed!r}"[:300])
    return items


def read_logs(log_dir: str | Path) -> dict[str, list[dict]]:
    """Per-item logs from a directory written by `tru eval` or by the original TOFU code, checked."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise TruError(f"log directory {log_dir} does not exist")
    for sub in (log_dir, log_dir / "logs"):
        ours = {n: sub / f"tofu_{n}.jsonl" for n in (*SETS, "holdout")}
        if any(p.is_file() for p in ours.values()):
            return {n: check(n, _read_ours(p), p) for n, p in ours.items() if p.is_file()}
    tofu = {n: log_dir / f for n, f in TOFU_LOG_FILES.items()}
    if any(p.is_file() for p in tofu.values()):
        return {n: check(n, _from_tofu_file(p), p) for n, p in tofu.items() if p.is_file()}
    raise TruError(f"{log_dir} holds no per-item logs (expected tofu_<set>.jsonl from tru eval, "
                   f"or TOFU's {', '.join(TOFU_LOG_FILES.values())})")
