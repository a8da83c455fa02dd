"""Checks of a benchmark's local files before anything heavy loads: each file the config names and
`benchmark.data_dir` holds must be UTF-8 (or parquet) and readable, hold rows, and give every row the
fields its role needs with the right types (`perturbed_answer` a list of strings, MCQ `choices` four
strings and `answer` an index). Absent files are left to the run (it reports their metrics missing)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tru_cli.data import files
from tru_cli.errors import TruError

QA = {"question": str, "answer": str}
# field -> type of the rows a TOFU split holds (optional fields are checked when present)
OPTIONAL = {"paraphrased_answer": str, "perturbed_answer": list}
ROLE_FIELDS = {"verbmem_forget": {"prompt": str, "gt": str}, "knowmem_forget": QA, "knowmem_retain": QA,
               "knowmem_forget_icl": QA, "knowmem_retain_icl": QA, "privleak_forget": {"text": str},
               "privleak_holdout": {"text": str}, "privleak_retain": {"text": str},
               "mcq": {"question": str, "choices": list, "answer": int},
               "mmlu": {"question": str, "choices": list, "answer": int, "subject": str}}


def _row_problem(row: dict, fields: dict[str, type], optional: dict[str, type]) -> str | None:
    for name, kind in {**fields, **{k: v for k, v in optional.items() if k in row}}.items():
        value = row.get(name)
        if name not in row:
            return f"has no '{name}' field (fields: {', '.join(sorted(row)) or 'none'})"
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            return f"'{name}' is a {type(value).__name__}, not a {kind.__name__}"
        if kind is list and not all(isinstance(v, str) for v in value):
            return f"'{name}' must be a list of strings"
    if "choices" in fields:
        if len(row["choices"]) != 4 or not 0 <= row["answer"] < 4:
            return "needs 4 'choices' and an 'answer' index from 0 to 3"
    return None


def check_file(path: Path, fields: dict[str, type], optional: dict[str, type] | None = None) -> str | None:
    """The problem with one data file, or None."""
    try:
        rows = files.read_records(path)
    except UnicodeDecodeError as exc:
        return f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
    except TruError as exc:
        return str(exc)
    except Exception as exc:  # a corrupt parquet file, a folder where a file belongs
        return f"{path} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})"
    if not rows:
        return f"{path} holds no rows; an empty file would change the experiment silently"
    for n, row in enumerate(rows, start=1):
        problem = _row_problem(row, fields, optional or {})
        if problem:
            return f"{path} row {n} {problem}"
    return None


def _tofu_files(bench: DictConfig) -> dict[Path, tuple[dict, dict]]:
    data_dir = Path(bench.data_dir)
    forget = str(bench.forget_split)
    names = [forget, bench.get("retain_split"), bench.get("holdout_split"), "full",
             *(bench.get("pretrain_splits") or []), *(bench.get("retain_also") or [])]
    perturbed = [f"{forget}_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed"]
    out = {}
    for name in [n for n in names if n] + perturbed:
        for ext in files.EXTENSIONS:
            path = data_dir / f"{name}{ext}"
            if path.is_file():
                out[path] = ({**QA, "perturbed_answer": list} if name in perturbed else QA, OPTIONAL)
                break
    return out


def _role_files(bench: DictConfig) -> dict[Path, tuple[dict, dict]]:
    data_dir, out = Path(bench.data_dir), {}
    for role, spec in (bench.get("files") or {}).items():
        names = spec.get("file")
        for name in [names] if isinstance(names, str) else list(names or []):
            path = data_dir / str(name)
            if path.is_file():
                corpus = {str(bench.get("text_field") or "text"): str} if role.endswith("_corpus") else {}
                out[path] = (ROLE_FIELDS.get(role, corpus), {})
                break
    return out


def problems(bench: DictConfig) -> list[str]:
    """Every problem of the benchmark's local files (none without `benchmark.data_dir`)."""
    if not bench.get("data_dir"):
        return []
    data_dir = Path(str(bench.data_dir))
    if not data_dir.is_dir():
        return [f"benchmark.data_dir={data_dir} is not a directory"]
    named = _role_files(bench) if bench.get("files") else _tofu_files(bench)
    found = [check_file(path, fields, optional) for path, (fields, optional) in named.items()]
    return [p for p in found if p]
