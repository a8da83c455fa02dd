"""A TOFU-format benchmark's splits, from the embedded generator, a local directory or the hub."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli.data import files, synthetic
from tru_cli.errors import TruError

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
    import datasets

    try:
        return list(datasets.load_dataset(hub_id, name=split, split="train"))
    except Exception as exc:  # offline, unknown id or unknown config: say how to go local
        raise TruError(f"cannot load split '{split}' of {hub_id} from the hub ({type(exc).__name__}); "
                       f"download it and set benchmark.data_dir=DIR") from None


def eval_sets(bench: DictConfig, max_items: int | None = None) -> dict[str, list[dict]]:
    out = {}
    for role, pattern in EVAL_SETS.items():
        rows = load_split(bench, pattern.format(forget_split=bench.forget_split))
        out[role] = rows[:max_items] if max_items else rows
    return out


def training_rows(bench: DictConfig, split: str) -> list[dict]:
    """What a finetune learns: the split, plus `benchmark.pretrain_splits` (for the embedded
    benchmark the general-knowledge sets, which real models bring from pretraining)."""
    rows = load_split(bench, split)
    for extra in bench.get("pretrain_splits") or []:
        rows += load_split(bench, extra)
    return rows


def retain_rows(bench: DictConfig) -> list[dict]:
    """What unlearning must keep: the retain split plus `benchmark.retain_also`."""
    rows = load_split(bench, bench.retain_split)
    for extra in bench.get("retain_also") or []:
        rows += load_split(bench, extra)
    return rows


def all_text(bench: DictConfig) -> list[str]:
    """Every string of the embedded benchmark, for training the tiny model's tokenizer."""
    params = OmegaConf.to_container(bench.synthetic, resolve=True)
    texts = []
    for rows in _synthetic_splits(tuple(sorted(params.items()))).values():
        for row in rows:
            for value in row.values():
                texts.extend(value if isinstance(value, list) else [value])
    return [t for t in texts if isinstance(t, str)]
