"""TOFU statistics: golden values on the original TOFU logs, hand-made cases, re-aggregation."""

import math

import pytest

from tests.conftest import SHARED_DATA, needs_shared
from tru_cli.metrics import tofu

LOGS = SHARED_DATA / "tofu" / "reference_logs"


@needs_shared
def test_golden_forget_quality_and_model_utility_of_llama2_full_vs_retain90():
    # anchors.md: the original TOFU aggregation gives FQ 1.83e-21 and MU 0.623 for these logs.
    full = tofu.read_logs(LOGS / "llama2-7b_full")
    retain = tofu.read_logs(LOGS / "llama2-7b_retain90")
    metrics = tofu.aggregate(full, retain)
    assert metrics["tofu/forget_quality"] == pytest.approx(1.83e-21, rel=0.01)
    assert metrics["tofu/model_utility"] == pytest.approx(0.623, abs=0.0005)
    assert len(full["forget"]) == 300 and len(full["real_authors"]) == 100


@needs_shared
def test_retain_model_against_itself_has_forget_quality_one():
    retain = tofu.read_logs(LOGS / "phi-1.5_retain90")
    assert tofu.aggregate(retain, retain)["tofu/forget_quality"] == pytest.approx(1.0)


def _item(gt, para=None, pert=None, rouge=1.0):
    item = {"avg_gt_loss": gt, "rougeL_recall": rouge, "rouge1_recall": rouge}
    if para is not None:
        item["avg_paraphrased_loss"] = para
    if pert is not None:
        item["average_perturb_loss"] = pert
    return item


def test_truth_ratio_aggregations_by_hand():
    # R = exp(mean(pert) - para): items with R = e and R = 1/e
    forget = [_item(1.0, 1.0, [2.0, 2.0]), _item(1.0, 2.0, [1.0, 1.0])]
    agg = tofu.aggregate_set("forget", forget)
    assert agg["forget_truth_ratio"] == pytest.approx(math.exp(-1))  # mean(min(R, 1/R))
    assert agg["forget_prob"] == pytest.approx(math.exp(-1.0))
    retain = tofu.aggregate_set("retain", forget)
    assert retain["retain_truth_ratio"] == pytest.approx((1 - math.exp(-1) + 0) / 2)  # max(0, 1-1/R)
    # real authors: normalised probability p(a) / (p(a) + sum p(pert))
    ra = tofu.aggregate_set("real_authors", [_item(1.0, 1.0, [1.0, 1.0, 1.0])])
    assert ra["ra_prob"] == pytest.approx(0.25)


def test_missing_inputs_are_missing_not_zero(caplog):
    sets = {"forget": [_item(1.0)], "retain": [_item(1.0)]}  # no perturbed answers anywhere
    metrics = tofu.aggregate(sets, None)
    for key in ("forget_truth_ratio", "model_utility", "forget_quality", "privleak"):
        assert metrics[f"tofu/{key}"] is None, key  # reported as missing, never as zero
    assert "tofu/retain_truth_ratio" not in metrics  # sub-statistics without inputs are left out
    assert metrics["tofu/forget_prob"] == pytest.approx(math.exp(-1))
    assert "model_utility is missing" in caplog.text


@needs_shared
def test_our_logs_round_trip_to_the_same_metrics(tmp_path):
    full = tofu.read_logs(LOGS / "llama2-7b_full")
    tofu.write_logs(tmp_path, full)
    again = tofu.read_logs(tmp_path)
    assert tofu.aggregate(again) == pytest.approx(tofu.aggregate(full))


@needs_shared
def test_cli_reaggregates_original_tofu_logs(tmp_path):
    from tests.conftest import results, run_tru

    run_tru(["eval", "benchmark=tofu", f"eval.from_logs={LOGS / 'llama2-7b_full'}",
             f"eval.retain_logs={LOGS / 'llama2-7b_retain90'}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    res = results(tmp_path / "run")
    assert res["status"] == "completed"
    assert res["metrics"]["tofu/forget_quality"] == pytest.approx(1.83e-21, rel=0.01)
    assert res["metrics"]["tofu/model_utility"] == pytest.approx(0.623, abs=0.0005)
    assert (tmp_path / "run" / "logs" / "tofu_forget.jsonl").is_file()  # re-aggregatable again
