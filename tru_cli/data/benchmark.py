"""A benchmark's data, from the embedded generator, a local directory (`benchmark.data_dir`) or the hub.

TOFU-format benchmarks (tofu, synthetic) are named splits of QA rows. MUSE and WMDP name their files
by role in `benchmark.files` (`<role>: {file: path or [candidates] under data_dir, hub: [config, split]}`);
their raw corpora are the unlearning data, cut into chunks of `benchmark.chunk_words` words."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli.data import files, synthetic
from tru_cli.errors import TruError

log = logging.getLogger("tru")

# The roles the pipeline asks for, mapped to TOFU config names.
EVAL_SETS = {
    "forget": "{forget_split}_perturbed",
    "retain": "retain_perturbed",
    "real_authors": "real_authors_perturbed",
    "world_facts": "world_facts_perturbed",
}


@lru_cache(maxsize=4)
def _synthetic_splits(frozen: tuple) -> dict:
    return synthetic.generate(**dict(frozen))


def load_split(bench: DictConfig, split: str) -> list[dict]:
    """Rows of one split: `forget10`, `retain90`, `forget10_perturbed`, `real_authors_perturbed`, ..."""
    if bench.get("data_dir"):
        data_dir = Path(bench.data_dir)
        if not data_dir.is_dir():
            raise TruError(f"benchmark.data_dir={data_dir} is not a directory")
        return files.read_records(files.find_split_file(data_dir, split))
    if bench.source == "synthetic":
        params = OmegaConf.to_container(bench.synthetic, resolve=True)
        try:
            splits = _synthetic_splits(tuple(sorted(params.items())))
        except ValueError as exc:
            raise TruError(str(exc)) from None
        if split not in splits:
            raise TruError(f"the embedded benchmark has no split '{split}'; it has {', '.join(splits)}")
        return [dict(r) for r in splits[split]]
    return _load_hub(bench.hub_id, split)


def _load_hub(hub_id: str, split: str) -> list[dict]:
    """A TOFU-format split: the hub config of that name, whose one split is `train`."""
    return _load_hub_config(hub_id, split, "train", f"split '{split}'")


def _load_hub_config(hub_id: str, config: str | None, split: str, role: str) -> list[dict]:
    import datasets

    try:
        return list(datasets.load_dataset(hub_id, name=config, split=split))
    except Exception as exc:  # offline, unknown id or unknown config: say how to go local
        raise TruError(f"cannot load {role} ({hub_id}, config {config}, split {split}) from the hub "
                       f"({type(exc).__name__}); download it and set benchmark.data_dir=DIR") from None


def eval_sets(bench: DictConfig, max_items: int | None = None) -> dict[str, list[dict]]:
    """TOFU's four eval sets. A set whose file is absent from `benchmark.data_dir` is left out with a
    warning (its metrics are then missing); a forget split without perturbed answers stands in for
    `<forget>_perturbed` (no truth ratio then)."""
    out = {}
    for role, pattern in EVAL_SETS.items():
        name = pattern.format(forget_split=bench.forget_split)
        candidates = [name, bench.forget_split] if role == "forget" else [name]
        rows = None
        for split in candidates:
            if _has_split(bench, split):
                rows = load_split(bench, split)
                break
        if rows is None:
            log.warning("benchmark.data_dir=%s has no %s file: the %s metrics are missing",
                        bench.data_dir, " or ".join(candidates), role)
            continue
        if role == "forget" and split != name:
            log.warning("%s has no perturbed answers (no %s file): forget truth ratio and forget "
                        "quality are missing", split, name)
        out[role] = rows[:max_items] if max_items else rows
    return out


def holdout_set(bench: DictConfig, max_items: int | None = None) -> list[dict] | None:
    """TOFU's holdout split (authors never trained on: privleak's non-members), or None with a
    warning when the benchmark or its data_dir has none."""
    split = bench.get("holdout_split")
    if not split or not _has_split(bench, split):
        log.warning("no holdout split%s: privleak is missing", f" ({split})" if split else "")
        return None
    rows = load_split(bench, split)
    return rows[:max_items] if max_items else rows


def _has_split(bench: DictConfig, split: str) -> bool:
    if not bench.get("data_dir"):
        return True  # the hub and the embedded generator have every TOFU split
    return any((Path(bench.data_dir) / f"{split}{ext}").is_file() for ext in files.EXTENSIONS)


def training_rows(bench: DictConfig, split: str) -> list[dict]:
    """What a finetune learns: the split, plus `benchmark.pretrain_splits` (for the embedded
    benchmark the general-knowledge sets, which real models bring from pretraining). MUSE and WMDP:
    their corpora (`full` = forget + retain corpus, else the retain corpus)."""
    if bench.format != "tofu":
        return _corpus_training_rows(bench, split)
    if split == "full" and not _has_split(bench, "full"):
        present = [s for s in (bench.forget_split, bench.retain_split) if _has_split(bench, s)]
        log.warning("benchmark.data_dir=%s has no 'full' split: finetuning on %s", bench.data_dir,
                    " + ".join(present))
        rows = [r for s in present for r in load_split(bench, s)]
    else:
        rows = load_split(bench, split)
    for extra in bench.get("pretrain_splits") or []:
        rows += load_split(bench, extra)
    return rows


def retain_rows(bench: DictConfig) -> list[dict]:
    """What unlearning must keep: the retain split plus `benchmark.retain_also`; MUSE and WMDP:
    the retain corpus."""
    if bench.format != "tofu":
        rows = corpus_rows(bench, "retain_corpus")
        if rows is None:
            raise TruError(absent(bench, "retain_corpus") + "; the method's retain term needs it")
        return rows
    rows = load_split(bench, bench.retain_split)
    for extra in bench.get("retain_also") or []:
        rows += load_split(bench, extra)
    return rows


def forget_rows(bench: DictConfig) -> list[dict]:
    """The items unlearning forgets and targets are written for: TOFU's forget split (QA rows), or
    the chunks of a MUSE/WMDP forget corpus (text rows: the whole chunk is the forget sequence and,
    for TRU, the user message of its target)."""
    if bench.format == "tofu":
        return load_split(bench, bench.forget_split)
    rows = corpus_rows(bench, "forget_corpus")
    if rows is None:
        raise TruError(absent(bench, "forget_corpus"))
    return rows


# ---- MUSE / WMDP: files by role ----

def _spec(bench: DictConfig, role: str) -> DictConfig:
    spec = (bench.get("files") or {}).get(role)
    if spec is None:
        raise TruError(f"benchmark={bench.name} names no '{role}' file; add benchmark.files.{role}")
    return spec


def _candidates(spec) -> list[str]:
    value = spec.get("file")
    return [] if value is None else [str(value)] if isinstance(value, str) else [str(v) for v in value]


def absent(bench: DictConfig, role: str) -> str:
    """Why `role` is unavailable, with the fix (for warnings and errors)."""
    spec = _spec(bench, role)
    where = (f"benchmark.data_dir={bench.data_dir} has none of {', '.join(_candidates(spec))}"
             if bench.get("data_dir") else f"{role} is not on the hub")
    return f"{where} ({role}){'; ' + spec.note if spec.get('note') else ''}"


def load_role(bench: DictConfig, role: str) -> list[dict] | None:
    """Rows of the file playing `role`, or None when a local data_dir lacks it (the caller warns
    and reports the metric as missing, or fails when the data is required)."""
    spec = _spec(bench, role)
    if bench.get("data_dir"):
        data_dir = Path(bench.data_dir)
        if not data_dir.is_dir():
            raise TruError(f"benchmark.data_dir={data_dir} is not a directory")
        for name in _candidates(spec):
            if (data_dir / name).is_file():
                return files.read_records(data_dir / name)
        return None
    hub = spec.get("hub")
    if hub is None:
        return None
    try:
        return _load_hub_config(str(spec.get("hub_id") or bench.hub_id), hub[0], hub[1], role)
    except TruError as exc:
        raise TruError(f"{exc}{'; ' + spec.note.strip() if spec.get('note') else ''}") from None


def corpus_rows(bench: DictConfig, role: str) -> list[dict] | None:
    """A raw corpus cut into chunks of `benchmark.chunk_words` words, each {"id", "text"}; MUSE trains
    on fixed-length token chunks of the same text (tokens are cut again at model.max_length)."""
    docs = load_role(bench, role)
    if docs is None:
        return None
    field, size = bench.get("text_field") or "text", int(bench.chunk_words)
    rows = []
    for doc in docs:
        words = str(doc.get(field) or "").split()
        for start in range(0, len(words), size):
            rows.append({"id": f"{role}-{len(rows):05d}", "text": " ".join(words[start:start + size])})
    if not rows:
        raise TruError(f"{role} of benchmark={bench.name} has no '{field}' text; set benchmark.text_field")
    return rows


def _corpus_training_rows(bench: DictConfig, split: str) -> list[dict]:
    """MUSE/WMDP: what a (tiny) target model reads before unlearning. Without raw corpora in a local
    data_dir, the texts the benchmark does ship (passages, questions) stand in, so that the
    embedded tests still train on the benchmark's language; holdout texts are never trained on."""
    roles = ["forget_corpus", "retain_corpus"] if split == "full" else ["retain_corpus"]
    rows = [r for role in roles for r in (corpus_rows(bench, role) or [])]
    if rows:
        return rows
    stand_in = bench.get("finetune_fallback") or []
    if split != "full":
        stand_in = [r for r in stand_in if "forget" not in r]
    log.warning("no raw corpus for benchmark=%s: the model finetunes on %s instead", bench.name,
                ", ".join(stand_in) or "nothing")
    for role in stand_in:
        for r in load_role(bench, role) or []:
            rows.append({"text": row_text(r)})
    return rows


def row_text(row: dict) -> str:
    """One string per row of any benchmark file (tokenizer training, stand-in finetuning)."""
    if "text" in row:
        return str(row["text"])
    if "prompt" in row:
        return f"{row['prompt']}{row.get('gt', '')}"
    if "choices" in row:
        return " ".join([str(row["question"]), *map(str, row["choices"])])
    return f"Question: {row.get('question', '')}\nAnswer: {row.get('answer', '')}"


def all_text(bench: DictConfig) -> list[str]:
    """Every string of the benchmark, for training the tiny model's tokenizer: the embedded
    generator's splits, or every file a MUSE/WMDP config names (those present)."""
    if bench.format != "tofu":
        return [row_text(r) for role in bench.files for r in (load_role(bench, role) or [])]
    if bench.source != "synthetic" or bench.get("data_dir"):
        return [row_text(r) for r in training_rows(bench, "full")]
    params = OmegaConf.to_container(bench.synthetic, resolve=True)
    texts = []
    for rows in _synthetic_splits(tuple(sorted(params.items()))).values():
        for row in rows:
            for value in row.values():
                texts.extend(value if isinstance(value, list) else [value])
    return [t for t in texts if isinstance(t, str)]
