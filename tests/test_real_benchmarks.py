"""The real benchmarks through the CLI on the tiny model: TOFU, MUSE and WMDP from the local slices
in ../shared/data (one data switch, `benchmark.data_dir`), missing inputs reported as missing, and
the MUSE and WMDP unlearning data paths."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import SHARED_DATA, needs_shared, results, run_tru

# A tiny model that learns the slice in one pass, and short evaluations.
QUICK = ["model=tiny", "model.recipe.finetune_epochs=1", "eval.max_items=8", "eval.max_new_tokens=16",
         "eval.show_examples=0"]


def _eval(tmp_path, *args):
    run_dir = tmp_path / "run"
    proc = run_tru(["eval", *QUICK, *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    return results(run_dir)["metrics"], proc.stdout + proc.stderr, run_dir


@needs_shared
@pytest.mark.slow
def test_tofu_slice_reports_what_it_can_and_marks_the_rest_missing(tmp_path):
    m, err, run_dir = _eval(tmp_path, "benchmark=tofu", f"benchmark.data_dir={SHARED_DATA / 'tofu'}",
                            "benchmark.forget_split=forget05")
    for key in ("tofu/forget_rougeL_recall", "tofu/forget_prob", "tofu/extraction_strength",
                "tofu/ra_prob", "tofu/ra_truth_ratio", "tofu/wf_rougeL_recall"):
        assert isinstance(m[key], float), key
    assert 0 <= m["tofu/extraction_strength"] <= 1
    # no perturbed forget answers, no retain or holdout split in the slice: missing, not zero
    for key in ("tofu/forget_truth_ratio", "tofu/model_utility", "tofu/forget_quality", "tofu/privleak"):
        assert key in m and m[key] is None, key
    assert "retain_perturbed" in err and "forget05_perturbed" in err and "privleak is missing" in err
    forget = [json.loads(x) for x in (run_dir / "logs" / "tofu_forget.jsonl").read_text().splitlines()]
    assert len(forget) == 8 and all("mink_40" in r and "extraction_strength" in r for r in forget)


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("corpus", ["news", "books"])
def test_muse_slice_gives_every_muse_metric(tmp_path, corpus):
    m, _, run_dir = _eval(tmp_path, f"benchmark=muse_{corpus}", f"benchmark.data_dir={SHARED_DATA / 'muse' / corpus}",
                          "model.max_length=128")
    for key in ("muse/verbmem_forget", "muse/knowmem_forget", "muse/knowmem_retain"):
        assert 0 <= m[key] <= 100, key
    assert -100 <= m["muse/privleak"] and m["muse/privleak"] == m["muse/privleak"]  # a number, not NaN
    for name in ("muse_verbmem_forget", "muse_knowmem_forget", "muse_knowmem_retain", "muse_privleak"):
        assert (run_dir / "logs" / f"{name}.jsonl").is_file(), name


@needs_shared
@pytest.mark.slow
def test_muse_privleak_reference_is_the_retrained_models_own_auc(tmp_path, tiny_model):
    """benchmark.retrain_model: PrivLeak's reference AUC is that model's forget-vs-holdout AUC on the
    same texts (its own evaluation, through the store), not MUSE's published constant."""
    from tru_cli.models import loading

    retrain, tok = tiny_model(["A news passage about a council vote and a stadium."] * 20)
    loading.save(retrain, tok, tmp_path / "retrain")
    (tmp_path / "own").mkdir()
    (tmp_path / "ref").mkdir()
    data = [f"benchmark.data_dir={SHARED_DATA / 'muse' / 'news'}", "model.max_length=128"]
    own, _, _ = _eval(tmp_path / "own", "benchmark=muse_news", *data, f"model.path={tmp_path / 'retrain'}")
    m, _, _ = _eval(tmp_path / "ref", "benchmark=muse_news", *data, f"benchmark.retrain_model={tmp_path / 'retrain'}")
    assert m["muse/privleak_auc_reference"] == pytest.approx(own["muse/privleak_auc"])
    assert m["muse/privleak_auc_reference"] != pytest.approx(0.4772)  # not the published constant
    assert m["muse/privleak"] == pytest.approx((m["muse/privleak_auc"] - own["muse/privleak_auc"])
                                               / own["muse/privleak_auc"] * 100)


@needs_shared
@pytest.mark.slow
def test_wmdp_bio_slice_through_lm_eval(tmp_path):
    m, err, run_dir = _eval(tmp_path, "benchmark=wmdp_bio", f"benchmark.data_dir={SHARED_DATA / 'wmdp'}",
                            "eval.max_items=40", "benchmark.wmdp.option_seeds=[1,2,3]")
    assert 0 <= m["wmdp/bio_acc"] <= 1 and m["wmdp/bio_items"] == 40
    # the same questions with their options shuffled three ways (make option-shuffle): a model that barely
    # knows the answers (the tiny one, one epoch) answers some questions right in one order only
    # (the names make option-shuffle's columns: experiments/paper/option-shuffle.yaml)
    for prefix in ("wmdp/bio_", "mmlu/"):
        accs = [m[f"{prefix}shuffled_acc_seed{s}"] for s in (1, 2, 3)]
        assert m[f"{prefix}shuffled_acc_mean"] == pytest.approx(sum(accs) / 3)
        assert m[f"{prefix}shuffled_flips"] > 0
    # MMLU from the folder beside the slice (../mmlu/mmlu.jsonl), 40 per subject, its two bio subjects named
    assert m["mmlu/items"] == 160 and 0 <= m["mmlu/acc"] <= 1 and "mmlu/acc is missing" not in err
    assert isinstance(m["mmlu/college_biology_acc"], float) and isinstance(m["mmlu/virology_acc"], float)
    items = [json.loads(x) for x in (run_dir / "logs" / "wmdp_bio.jsonl").read_text().splitlines()]
    assert len(items) == 40 and sum(i["correct"] for i in items) / 40 == pytest.approx(m["wmdp/bio_acc"])


def test_real_benchmark_configs_compose_for_full_size_runs(config):
    cfg = config("unlearn", "model=zephyr-7b-beta", "benchmark=wmdp_cyber", "method=rmu")
    assert cfg.benchmark.files.forget_corpus.hub_id == "cais/wmdp-corpora" and cfg.method.name == "rmu"
    cfg = config("unlearn", "benchmark=muse_news", "method=npo")
    assert cfg.benchmark.files.knowmem_forget.hub == ["knowmem", "forget_qa"] and cfg.benchmark.muse.auc_retrain == 0.4772
    cfg = config("eval", "benchmark=muse_books")
    assert cfg.benchmark.muse.auc_retrain == 0.5393


def test_gated_bio_forget_corpus_says_how_to_get_it(tmp_path):
    (tmp_path / "data").mkdir()
    proc = run_tru(["unlearn", "benchmark=wmdp_bio", f"benchmark.data_dir={tmp_path / 'data'}", "method=ga"],
                   cwd=tmp_path, check=False)
    lines = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    assert "bio-forget-corpus.jsonl" in lines[0] and "gated" in lines[0] and "Traceback" not in proc.stderr


def _corpus_dir(tmp_path, name: str) -> object:
    """A data_dir with raw forget/retain corpora made from the shared slice's passages."""
    src = SHARED_DATA / "muse" / "news"
    dest = tmp_path / name
    shutil.copytree(src, dest)
    forget = json.loads((src / "privleak" / "forget.json").read_text())[:6]
    retain = json.loads((src / "privleak" / "retain2.json").read_text())[:6]
    (dest / "raw").mkdir()
    (dest / "raw" / "forget.txt").write_text("\n\n".join(forget))
    (dest / "raw" / "retain1.txt").write_text("\n\n".join(retain))
    return dest, forget, retain


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("method", ["npo", "tru"])
def test_muse_corpora_are_unlearning_data(tmp_path, method):
    data, _, _ = _corpus_dir(tmp_path, "muse")
    run_dir = tmp_path / "run"
    # default chunk_words (512) and model.max_length (512): each passage alone is longer than the context
    run_tru(["unlearn", *QUICK, "benchmark=muse_news", f"benchmark.data_dir={data}", f"method={method}",
             "trainer.unlearn.epochs=1", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    m = results(run_dir)["metrics"]
    assert m["unlearn/forget_items"] >= 2 and m["unlearn/steps"] >= 1
    if method == "tru":  # one target per forget-corpus chunk, the passage as the user message
        targets = [json.loads(x) for x in next(tmp_path.rglob("targets.jsonl")).read_text().splitlines()]
        assert len(targets) == m["unlearn/forget_items"] and targets[0]["id"].startswith("forget_corpus-")
        # the passage was cut, never the target: every reasoning and refusal token is trained on
        assert m["unlearn/target_tokens"] > 50 * len(targets) and m["unlearn/target_tokens_dropped"] == 0
        # a context too small even for the targets stops before training, naming what to set
        proc = run_tru(["unlearn", *QUICK, "benchmark=muse_news", f"benchmark.data_dir={data}", "method=tru",
                        "trainer.unlearn.epochs=1", "model.max_length=40", f"hydra.run.dir={tmp_path / 'cut'}"],
                       cwd=tmp_path, check=False)
        assert proc.returncode == 1 and "training would cut their refusals" in proc.stderr
        assert "model.max_length=" in proc.stderr and "unlearn.allow_cut_targets=true" in proc.stderr
        assert results(tmp_path / "cut")["status"] == "failed"


@needs_shared
@pytest.mark.slow
def test_attacks_re_ask_muse_knowmem_questions(tmp_path):
    data, _, _ = _corpus_dir(tmp_path, "muse")
    run_dir = tmp_path / "run"
    run_tru(["attack", *QUICK, "benchmark=muse_news", f"benchmark.data_dir={data}", "method=graddiff",
             "trainer.unlearn.epochs=1", "attack=suite", "attack.suite=[prefill,icl]", "eval.max_items=6",
             f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    m = results(run_dir)["metrics"]
    gold = json.loads((SHARED_DATA / "muse" / "news" / "knowmem" / "forget_qa.json").read_text())[:6]
    for name in ("prefill", "icl"):
        assert 0 <= m[f"attack/{name}/forget_rougeL_recall"] <= 1 and f"attack/{name}/original_forget_rougeL_recall" in m
        logs = [json.loads(x) for x in (run_dir / "logs" / f"attack_{name}.jsonl").read_text().splitlines()]
        assert [r["question"] for r in logs[:6]] == [g["question"] for g in gold][:len(logs[:6])]


@pytest.mark.slow
def test_wmdp_corpora_are_unlearning_data(tmp_path):
    data = tmp_path / "wmdp"
    data.mkdir()
    forget = [{"text": f"Exploit {i}: overflow the buffer of service {i} and gain a shell on port {1000 + i}."}
              for i in range(12)]
    retain = [{"text": f"Network {i} uses a firewall, patches its servers and monitors logins every day."}
              for i in range(12)]
    questions = [{"question": f"Which port does service {i} use?", "choices": [str(1000 + i), "22", "80", "443"],
                  "answer": 0} for i in range(8)]
    for name, rows in (("cyber-forget-corpus", forget), ("cyber-retain-corpus", retain), ("wmdp-cyber", questions)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = tmp_path / "run"
    run_tru(["unlearn", *QUICK, "benchmark=wmdp_cyber", f"benchmark.data_dir={data}", "method=rmu",
             "trainer.unlearn.epochs=1", "unlearn.evaluate=true", "benchmark.wmdp.mmlu=false",
             f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    m = results(run_dir)["metrics"]
    assert m["unlearn/forget_items"] == 12 and 0 <= m["wmdp/cyber_acc"] <= 1


def _wmdp_dir(tmp_path) -> object:
    """data_dir with the shared WMDP-Bio questions, small forget/retain corpora, and the shared MMLU
    questions beside it (../mmlu/, where the config looks)."""
    data = tmp_path / "wmdp"
    data.mkdir()
    shutil.copy(SHARED_DATA / "wmdp" / "bio_200.jsonl", data / "bio_200.jsonl")
    shutil.copytree(SHARED_DATA / "mmlu", tmp_path / "mmlu")
    forget = [{"text": f"Pathogen note {i}: the toxin gene {i} is expressed under promoter {100 + i}."} for i in range(8)]
    retain = [{"text": f"Cell biology {i}: ribosomes translate messenger RNA into protein {i}."} for i in range(8)]
    for name, rows in (("bio-forget-corpus", forget), ("bio-retain-corpus", retain)):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("bench", ["wmdp_bio", "muse_verbmem"])
def test_attacks_score_wmdp_and_verbmem_as_their_evaluations_do(tmp_path, bench):
    """The attack's plain score of the unlearned model is the evaluation's own metric on the same items
    (WMDP accuracy through lm-eval; MUSE VerbMem's ROUGE-L F1 of continuations), so its recovery is
    the recovery of that metric; every attack of the suite that applies runs."""
    if bench == "wmdp_bio":
        args = ["benchmark=wmdp_bio", f"benchmark.data_dir={_wmdp_dir(tmp_path)}", "method=rmu"]
        metric, evaluated, scale, extra = "acc", "wmdp/bio_acc", 1.0, []
    else:
        args = ["benchmark=muse_news", f"benchmark.data_dir={_corpus_dir(tmp_path, 'muse')[0]}", "method=graddiff",
                "benchmark.muse.verbmem_max_new_tokens=16"]
        metric, evaluated, scale, extra = "rougeL_f1", "muse/verbmem_forget", 100.0, ["attack.forget_items=verbmem"]
    common = [*QUICK, *args, "trainer.unlearn.epochs=1", "eval.max_items=6"]
    run_tru(["unlearn", *common, "unlearn.evaluate=true", f"hydra.run.dir={tmp_path / 'unlearn'}"], cwd=tmp_path)
    suite = "[relearn,jailbreak,icl]" if bench == "wmdp_bio" else "[relearn,prefill,icl]"
    run_tru(["attack", *common, *extra, "attack=suite", f"attack.suite={suite}", "attack.settings.relearn.steps=[0,2]",
             f"hydra.run.dir={tmp_path / 'attack'}"], cwd=tmp_path)
    evaluation, attack = results(tmp_path / "unlearn")["metrics"], results(tmp_path / "attack")["metrics"]
    for name in suite.strip("[]").split(","):
        plain = attack[f"attack/{name}/unlearned_forget_{metric}"]
        if name != "relearn":  # relearning evaluates the half it did not train on
            assert plain * scale == pytest.approx(evaluation[evaluated], abs=1e-9), name
        # the parts of its recovery (null where unlearning left the metric unchanged, as a tiny model at chance does)
        assert 0 <= attack[f"attack/{name}/forget_{metric}"] <= 1 and f"attack/{name}/original_forget_{metric}" in attack
        assert f"attack/{name}/forget_rougeL_recall" not in attack or metric == "rougeL_recall"
    logs = [json.loads(x) for x in (tmp_path / "attack" / "logs" / "attack_icl.jsonl").read_text().splitlines()]
    if bench == "wmdp_bio":  # weight attacks report utility on the MMLU questions of the domain's subjects
        assert 0 <= attack["attack/relearn/retain_acc"] <= 1 and "attack/relearn/unlearned_retain_acc" in attack
        gold = [json.loads(x) for x in (SHARED_DATA / "wmdp" / "bio_200.jsonl").read_text().splitlines()[:6]]
        assert all(r["generation"] in ("A", "B", "C", "D") for r in logs)
    else:
        gold = [{"question": r["prompt"]} for r in json.loads((SHARED_DATA / "muse" / "news" / "verbmem" / "forget.json")
                                                              .read_text())[:6]]
        assert all(len(r["reference"]) > 0 for r in logs)
    assert [r["question"] for r in logs] == [g["question"] for g in gold]
