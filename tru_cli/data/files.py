"""Reading data files (JSON, JSONL, parquet) with errors that name the file, the line and the fix."""

from __future__ import annotations

import json
from pathlib import Path

from tru_cli.errors import TruError

EXTENSIONS = (".jsonl", ".json", ".parquet", ".txt")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TruError(f"{path} line {number}: malformed JSON ({exc.msg} at column "
                               f"{exc.colno}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise TruError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def read_records(path: Path) -> list[dict]:
    """Rows of a .jsonl, .json (a list of objects or of strings, or JSON Lines under a .json name),
    .parquet or .txt file (one document, as MUSE ships its raw corpora). Strings become {"text": ...}."""
    path = Path(path)
    if path.suffix == ".parquet":
        import datasets  # deferred: heavy (pyarrow); only parquet files need it

        return list(datasets.Dataset.from_parquet(str(path)))
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [{"text": text}]
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return read_jsonl(path)  # TOFU ships JSON Lines under .json names
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    if isinstance(data, list) and all(isinstance(r, str) for r in data):  # MUSE privleak sets
        return [{"text": r} for r in data]
    raise TruError(f"{path}: expected a list of JSON objects or strings, or JSON Lines")


def find_split_file(data_dir: Path, split: str) -> Path:
    for ext in EXTENSIONS:
        candidate = Path(data_dir) / f"{split}{ext}"
        if candidate.is_file():
            return candidate
    looked = ", ".join(f"{split}{ext}" for ext in EXTENSIONS)
    raise TruError(f"benchmark.data_dir={data_dir} has no file for split '{split}' "
                   f"(looked for {looked}); add the file or point benchmark.data_dir elsewhere")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
