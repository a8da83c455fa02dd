"""The real CLI end to end on a reduced embedded default: pipeline, run contract, sweep with
stage reuse, re-aggregation from logs, and the standalone stage commands."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from tests.conftest import SMALL, results, run_tru, tru_env
from tru_cli import threads

pytestmark = pytest.mark.slow
CONTRACT = {"command", "status", "metrics", "artifacts", "versions", "device", "started_at", "finished_at"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tru_e2e")


@pytest.fixture(scope="module")
def pipeline_run(workdir):
    env = tru_env(workdir, WANDB_MODE="offline", TRU_PROGRESS_EVERY="0")  # every progress update logged
    proc = run_tru(["pipeline", *SMALL, f"hydra.run.dir={workdir / 'run'}"], workdir, env=env)
    return workdir / "run", proc


def test_pipeline_leaves_the_run_contract(pipeline_run):
    run_dir, _ = pipeline_run
    res = results(run_dir)
    assert CONTRACT <= set(res) and res["command"] == "pipeline" and res["status"] == "completed"
    assert {"tru", "torch", "transformers", "git_commit"} <= set(res["versions"])
    assert res["device"]["accelerator"] == "cpu" and res["device"]["num_processes"] == 1
    for role in ("target", "retain", "unlearned"):
        for name in ("forget_rougeL_recall", "retain_rougeL_recall", "forget_truth_ratio",
                     "model_utility", "forget_quality"):
            assert isinstance(res["metrics"][f"{role}/tofu/{name}"], float), (role, name)
    assert res["metrics"]["retain/tofu/forget_quality"] == pytest.approx(1.0)
    assert "unlearn/loss_last" in res["metrics"] and res["metrics"]["unlearn/tokens_per_second"] > 0
    assert res["metrics"]["target/finetune/train_seconds"] > 0
    assert res["metrics"]["retain/finetune/examples"] < res["metrics"]["target/finetune/examples"]
    for name in ("target_model", "retain_model", "unlearned_model", "targets"):
        assert (run_dir / res["artifacts"][name]).exists(), name
    assert (run_dir / res["artifacts"]["unlearned_model"] / "model.safetensors").is_file()
    assert (run_dir / res["artifacts"]["unlearned_model"] / "tokenizer.json").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert "alpha: 0.1" in config and "lambda_retain: 1.0" in config


def test_long_loops_report_progress_as_log_lines_when_not_a_terminal(pipeline_run):
    _, proc = pipeline_run
    output = proc.stdout + proc.stderr  # Hydra's log handler writes to stdout
    lines = output.splitlines()
    assert "\r" not in output  # no bar redrawn with carriage returns into a log
    steps = [x for x in lines if "][tru][INFO] - unlearn: " in x and " steps" in x]
    assert steps and "ETA" in steps[0] and "tokens/s" in steps[-1] and "loss" in steps[-1]
    assert any(" - finetune full: " in x and "ETA" in x for x in lines)
    # scoring per set; greedy answers in one stream of batches over every set (benchmarks/tofu.py)
    for label in ("eval forget: scoring", "eval retain: scoring", "eval: answers"):
        assert any(f" - {label}: " in x for x in lines), label


def test_pipeline_writes_per_item_logs_and_a_wandb_run(pipeline_run):
    run_dir, _ = pipeline_run
    for role in ("target", "retain", "unlearned"):
        rows = [json.loads(line) for line in (run_dir / "logs" / role / "tofu_forget.jsonl").open()]
        assert rows and {"id", "question", "answer", "generation", "avg_gt_loss", "rougeL_recall",
                         "truth_ratio", "average_perturb_loss", "avg_paraphrased_loss"} <= set(rows[0])
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


def test_eval_reaggregates_saved_logs_without_a_model(pipeline_run, workdir):
    run_dir, _ = pipeline_run
    out = workdir / "reagg"
    run_tru(["eval", f"eval.from_logs={run_dir / 'logs' / 'unlearned'}",
             f"eval.retain_logs={run_dir / 'logs' / 'retain'}", f"hydra.run.dir={out}"], workdir)
    again = results(out)["metrics"]
    original = results(run_dir)["metrics"]
    for key, value in again.items():
        assert value == pytest.approx(original[f"unlearned/{key}"], rel=1e-9), key


def test_sweep_runs_two_jobs_in_one_sweep_dir_and_finetunes_once(pipeline_run, workdir):
    sweep = workdir / "sweep"
    proc = run_tru(["pipeline", "-m", "method.alpha=0.05,0.2", *SMALL, f"hydra.sweep.dir={sweep}"], workdir)
    jobs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    assert [p.name for p in jobs] == ["0", "1"]
    assert [results(p)["status"] for p in jobs] == ["completed", "completed"]
    alphas = [OmegaConf.load(p / "config.yaml").method.alpha for p in jobs]
    assert alphas == [0.05, 0.2]  # one job per swept value, in the order given
    store = workdir / ".tru_store"
    # one target and one retain model for the first run and both sweep jobs: built once, reused
    assert len([p for p in (store / "finetune-full").iterdir() if p.is_dir()]) == 1
    assert len([p for p in (store / "finetune-retain").iterdir() if p.is_dir()]) == 1
    assert len([p for p in (store / "unlearn").iterdir() if p.is_dir()]) == 3  # alpha 0.1, 0.05, 0.2
    assert "reusing finetune-full" in proc.stdout + proc.stderr
    a, b = (results(p)["metrics"]["unlearn/loss_last"] for p in jobs)
    assert a != b


def test_standalone_stages(pipeline_run, workdir):
    run_dir, _ = pipeline_run
    target = run_dir / results(run_dir)["artifacts"]["target_model"]
    # generate-targets: one target per forget item with provenance
    run_tru(["generate-targets", *SMALL, f"hydra.run.dir={workdir / 'gt'}"], workdir)
    rows = [json.loads(line) for line in (workdir / "gt" / "targets.jsonl").open()]
    assert len(rows) == 20 and {"id", "question", "reasoning", "refusal", "backend", "model",
                                "prompt_version", "created_at"} <= set(rows[0])
    # unlearn (graddiff) from a local checkpoint, writing model/ and the training curve
    out = workdir / "gd"
    run_tru(["unlearn", "method=graddiff", f"model.path={target}", *SMALL, f"hydra.run.dir={out}"], workdir)
    res = results(out)
    assert res["status"] == "completed" and (out / "model" / "model.safetensors").is_file()
    assert (out / "train_log.jsonl").is_file() and res["metrics"]["unlearn/forget_nll_last"] > 0
    # finetune of the retain model into its own run dir
    ft = workdir / "ft"
    run_tru(["finetune", "finetune.split=retain", *SMALL, "model.recipe.finetune_epochs=1",
             f"hydra.run.dir={ft}"], workdir)
    assert (ft / "model" / "config.json").is_file() and results(ft)["metrics"]["finetune/examples"] > 0


def test_rerun_reuses_every_stage(pipeline_run, workdir):
    proc = run_tru(["pipeline", *SMALL, f"hydra.run.dir={workdir / 'again'}"], workdir)
    log = proc.stdout + proc.stderr
    for stage in ("finetune-full", "finetune-retain", "targets", "unlearn", "eval"):
        assert f"reusing {stage}" in log, stage
    first, second = results(pipeline_run[0])["metrics"], results(workdir / "again")["metrics"]
    assert second["unlearned/tofu/forget_rougeL_recall"] == first["unlearned/tofu/forget_rougeL_recall"]


def test_unlearn_and_eval_without_arguments_use_the_embedded_default(pipeline_run, workdir):
    # with no model.path, unlearn takes the finetuned target and the targets from the store
    run_tru(["unlearn", *SMALL, "unlearn.evaluate=true", f"hydra.run.dir={workdir / 'u'}"], workdir)
    res = results(workdir / "u")
    assert res["status"] == "completed" and "targets" in res["artifacts"]
    assert "tofu/forget_quality" in res["metrics"]  # the retain model's logs came from the store
    run_tru(["eval", *SMALL, f"hydra.run.dir={workdir / 'e'}"], workdir)
    target_eval = results(workdir / "e")["metrics"]
    pipeline = results(pipeline_run[0])["metrics"]
    assert target_eval["tofu/forget_rougeL_recall"] == pytest.approx(pipeline["target/tofu/forget_rougeL_recall"])


def test_compare_sweep_then_report(pipeline_run, workdir):
    sweep = workdir / "compare"
    run_tru(["pipeline", "-m", "experiments=[compare,smoke]", f"hydra.sweep.dir={sweep}"], workdir)
    proc = run_tru(["report", str(sweep)], workdir)
    out = sweep / "report"
    md = (out / "report.md").read_text().strip().splitlines()
    methods = ["tru", "ga", "graddiff", "kl", "npo", "simnpo", "idkpo", "idkdpo", "wga", "rmu"]
    assert len(md) == 2 + len(methods)
    assert [line.split("|")[1].strip() for line in md[2:]] == methods
    assert "tofu/forget_rougeL_recall ↓" in md[0] and "tofu/model_utility ↑" in md[0]
    rows = list(csv.DictReader((out / "report.csv").open()))
    assert len(rows) == len(methods) and all(r["status"] == "completed" for r in rows)
    assert all(float(r["tofu/model_utility"]) > 0 for r in rows)
    for png in ("fq_vs_mu.png", "forget_vs_retain_rouge.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "report.md" in proc.stdout
    # --wandb logs table and plots to a (here offline) wandb run beside the report
    run_tru(["report", str(sweep), "--wandb", "--out", str(workdir / "rep_wandb")], workdir,
            env=tru_env(workdir, WANDB_MODE="offline"))
    assert list((workdir / "rep_wandb" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_report_on_a_missing_dir_is_one_line(workdir):
    proc = run_tru(["report", str(workdir / "nope")], workdir, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "nope" in proc.stderr


def test_a_killed_pipeline_resumes_without_redoing_finished_stages(tmp_path):
    import signal
    import subprocess
    import time

    from tests.conftest import TRU

    proc = subprocess.Popen([*TRU, "pipeline", *SMALL, f"hydra.run.dir={tmp_path / 'first'}"], cwd=tmp_path,
                            env=tru_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob(".tru_store/finetune-full/*/DONE")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".tru_store/finetune-full/*/DONE")), "the target finetune never finished"
    assert results(tmp_path / "first")["status"] == "running"  # the crash is visible, not hidden
    rerun = run_tru(["pipeline", *SMALL, f"hydra.run.dir={tmp_path / 'second'}"], tmp_path)
    log = rerun.stdout + rerun.stderr
    assert "reusing finetune-full" in log and "finetune (full)" not in log
    assert results(tmp_path / "second")["status"] == "completed"


@pytest.mark.slow
def test_submitit_local_runs_sweep_jobs_and_counts_failures(pipeline_run, workdir):
    sweep = workdir / "submitit"
    proc = run_tru(["pipeline", "-m", "method.alpha=0.3,0.4", "hydra/launcher=submitit_local", *SMALL,
                    f"hydra.sweep.dir={sweep}"], workdir)
    assert "Submitit 'local' sweep" in proc.stdout + proc.stderr
    assert len(list((sweep / ".submitit").glob("*/*_result.pkl"))) == 2  # each job ran under submitit
    for job in ("0", "1"):
        res = results(sweep / job)
        assert res["status"] == "completed" and res["metrics"]["unlearned/tofu/forget_rougeL_recall"] >= 0
        # both jobs ran at once on this machine: each took half of the cores (device.num_threads)
        assert res["device"]["torch_threads"] == max(1, threads.cores() // 2)
    # failures inside submitit's processes are counted by the launching process (a model that is neither
    # a local folder nor on the offline hub passes the checks before launch and fails inside the job)
    bad = workdir / "submitit_bad"
    proc = run_tru(["eval", "-m", "model.path=nope/a,nope/b", "hydra/launcher=submitit_local", *SMALL,
                    f"hydra.sweep.dir={bad}"], workdir, check=False)
    assert proc.returncode != 0 and "2 of 2 sweep jobs failed" in proc.stdout + proc.stderr
    assert all(results(bad / job)["status"] == "failed" for job in ("0", "1"))
