"""The embedded benchmark: TOFU's split structure, fields and determinism."""

import pytest

from tru_cli.data import synthetic


@pytest.fixture(scope="module")
def splits():
    return synthetic.generate(seed=0, num_authors=40)


def _ids(rows):
    return {r["id"] for r in rows}


def test_split_sizes_follow_tofu(splits):
    assert len(splits["full"]) == 40 * 20
    assert [len(splits[f"forget{p:02d}"]) for p in (1, 5, 10)] == [20, 40, 80]
    for p in (1, 5, 10):
        assert len(splits[f"forget{p:02d}"]) + len(splits[f"retain{100 - p:02d}"]) == 800


def test_forget_splits_nest_and_retain_is_disjoint(splits):
    f1, f5, f10 = (_ids(splits[f"forget{p:02d}"]) for p in (1, 5, 10))
    assert f1 < f5 < f10
    for p in (1, 5, 10):
        forget, retain = _ids(splits[f"forget{p:02d}"]), _ids(splits[f"retain{100 - p:02d}"])
        assert not forget & retain
        assert forget | retain == _ids(splits["full"])
        holdout = _ids(splits[f"holdout{p:02d}"])
        assert len(holdout) == len(forget) and not holdout & _ids(splits["full"])
    # whole authors are forgotten, as in TOFU
    forget_authors = {r["author"] for r in splits["forget10"]}
    assert not forget_authors & {r["author"] for r in splits["retain90"]}
    assert not _ids(splits["retain_perturbed"]) & f10


def test_perturbed_rows_have_tofu_fields(splits):
    for row in splits["forget10_perturbed"] + splits["retain_perturbed"]:
        assert row["paraphrased_answer"] and row["paraphrased_question"] != row["question"]
        pert = row["perturbed_answer"]
        assert len(pert) == 5 and len(set(pert)) == 5 and row["paraphrased_answer"] not in pert
        assert row["question_es"].startswith("¿") and any("\u0400" <= c <= "\u04ff" for c in row["question_ru"])
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        assert all(len(r["perturbed_answer"]) == 3 and r["answer"] not in r["perturbed_answer"]
                   for r in splits[name])


def test_seeded_and_deterministic():
    a, b, c = synthetic.generate(seed=1, num_authors=8), synthetic.generate(seed=1, num_authors=8), \
        synthetic.generate(seed=2, num_authors=8)
    assert a == b and a["full"] != c["full"]
