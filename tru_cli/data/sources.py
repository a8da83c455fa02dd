"""Where a benchmark's rows come from: the embedded generator, a local directory
(`benchmark.data_dir`) or the hub. Which rows a benchmark uses for what is up to its module in
`tru_cli/benchmarks/`; this module only finds and reads them.

Two layouts: TOFU-format benchmarks are named splits of QA rows (`load_split`); MUSE and WMDP name
their files by role in `benchmark.files` (`<role>: {file: path or [candidates] under data_dir,
hub: [config, split]}`, `load_role`), and their raw corpora are cut into chunks of
`benchmark.chunk_words` words (`corpus_rows`)."""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli.data import files, synthetic
from tru_cli.data.items import row_text
from tru_cli.errors import TruError

log = logging.getLogger("tru")


@lru_cache(maxsize=4)
def _synthetic_splits(frozen: tuple) -> dict:
    return synthetic.generate(**dict(frozen))


def synthetic_splits(bench: DictConfig) -> dict:
    """Every split of the embedded benchmark, generated once per parameter set."""
    params = OmegaConf.to_container(bench.synthetic, resolve=True)
    try:
        return _synthetic_splits(tuple(sorted(params.items())))
    except ValueError as exc:
        raise TruError(str(exc)) from None


def load_split(bench: DictConfig, split: str) -> list[dict]:
    """Rows of one split: `forget10`, `retain90`, `forget10_perturbed`, `real_authors_perturbed`, ..."""
    if bench.get("data_dir"):
        data_dir = Path(bench.data_dir)
        if not data_dir.is_dir():
            raise TruError(f"benchmark.data_dir={data_dir} is not a directory")
        return files.read_records(files.find_split_file(data_dir, split))
    if bench.source == "synthetic":
        splits = synthetic_splits(bench)
        if split not in splits:
            raise TruError(f"the embedded benchmark has no split '{split}'; it has {', '.join(splits)}")
        return [dict(r) for r in splits[split]]
    return _load_hub(bench.hub_id, split)


def _load_hub(hub_id: str, split: str) -> list[dict]:
    """A TOFU-format split: the hub config of that name, whose one split is `train`."""
    return _load_hub_config(hub_id, split, "train", f"split '{split}'")


def _load_hub_config(hub_id: str, config: str | None, split: str, role: str) -> list[dict]:
    import datasets  # deferred: heavy (pyarrow, fsspec); only hub-backed benchmarks need it

    try:
        return list(datasets.load_dataset(hub_id, name=config, split=split))
    except Exception as exc:  # offline, unknown id or unknown config: say how to go local
        raise TruError(f"cannot load {role} ({hub_id}, config {config}, split {split}) from the hub "
                       f"({type(exc).__name__}); download it and set benchmark.data_dir=DIR") from None


def has_split(bench: DictConfig, split: str) -> bool:
    if not bench.get("data_dir"):
        return True  # the hub and the embedded generator have every TOFU split
    return any((Path(bench.data_dir) / f"{split}{ext}").is_file() for ext in files.EXTENSIONS)


# ---- files by role (MUSE, WMDP) ----

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


def required_corpus(bench: DictConfig, role: str, why: str = "") -> list[dict]:
    """`corpus_rows`, or a TruError saying where the corpus should be."""
    rows = corpus_rows(bench, role)
    if rows is None:
        raise TruError(absent(bench, role) + why)
    return rows


def corpus_training_rows(bench: DictConfig, split: str) -> list[dict]:
    """What a (tiny) target model reads before unlearning on a corpus benchmark (MUSE, WMDP): the
    forget and retain corpora (`full`), or the retain corpus. Without raw corpora in a local
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


def role_texts(bench: DictConfig) -> list[str]:
    """Every string of the files a corpus benchmark names (those present), for the tiny tokenizer."""
    return [row_text(r) for role in bench.files for r in (load_role(bench, role) or [])]


def capped(rows: list[dict] | None, max_items: int | None) -> list[dict] | None:
    """The first `max_items` rows (all of them when the cap is null)."""
    return rows[:max_items] if rows and max_items else rows
