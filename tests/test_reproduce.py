"""The paper's tables as make targets (tru reproduce): every target becomes jobs at both scales, and
PLAN=1 prints the jobs, memory, requests, cost and device hours offline, starting nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import ROOT, SHARED_DATA, TRU, needs_shared, run_tru, tru_env
from tests.fake_openai import FakeOpenAI
from tru_cli.reproduce import plan, run, spec, table

TARGETS = ["alpha-sweep", "option-shuffle", "robustness", "standard-metrics", "table1", "table2"]


def test_every_paper_target_is_one_job_per_benchmark_and_row_at_both_scales():
    assert spec.targets() == TARGETS and spec.scales() == ["cpu", "paper"]
    for target in TARGETS:
        for scale in ("paper", "cpu"):
            paper_spec, settings = spec.load(target, scale)
            jobs = spec.jobs(paper_spec, settings)
            assert len(jobs) == len(paper_spec.benchmarks) * len(paper_spec.rows)
            for job in jobs:
                bench = [str(o) for o in settings.benchmarks[job.benchmark]]
                assert all(o in job.overrides for o in bench)  # the scale's backbone and data for that benchmark
                assert (job.command == "eval") == (job.row == spec.ORIGINAL and paper_spec.command == "pipeline")
                assert ("judge=none" in job.overrides) == (not paper_spec.judged)  # no judge bill for accuracy tables
    _, cpu = spec.load("table1", "cpu", data="/slices")
    assert "benchmark.data_dir=/slices/wmdp" in spec.jobs(*spec.load("table1", "cpu", data="/slices"))[0].overrides
    assert cpu.data == "/slices"


def test_cpu_scale_runs_the_benchmarks_that_fit_and_the_table_names_the_others(tmp_path):
    for target in TARGETS:
        paper_spec, paper = spec.load(target, "paper")
        assert spec.run_benchmarks(paper, target) is None  # the paper scale runs every benchmark
        paper_spec, cpu = spec.load(target, "cpu")
        chosen = spec.run_benchmarks(cpu, target).split(",")
        assert chosen and set(chosen) <= set(paper_spec.benchmarks), target  # never an unknown name
        jobs = spec.select(spec.jobs(paper_spec, cpu), None, ",".join(chosen))
        assert {j.benchmark for j in jobs} == set(chosen) and len(jobs) == len(chosen) * len(paper_spec.rows)
    robustness, _ = spec.load("robustness", "cpu")
    rows = [{"benchmark": "tofu_forget05", "row": row, "metric": str(m), "value": 2.0 + k, "paper": None,
             "status": "completed"} for row in robustness.rows for k, m in enumerate(robustness.columns)]
    made = table.write(robustness, "cpu", rows, tmp_path, not_run=["wmdp_bio"])
    text = made[0].read_text()
    assert "Not run this time: wmdp_bio" in text and "### tofu_forget05" in text and "### wmdp_bio" not in text
    assert "| tru | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 |" in text  # before, then each attack's UQ
    assert made[2].name == "robustness.png" and made[2].stat().st_size > 10_000
    # a stand-in benchmark's column comes from the metric it reports under its own name
    sweep, cpu = spec.load("alpha-sweep", "cpu")
    job = spec.jobs(sweep, cpu)[-1]
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "results.json").write_text(json.dumps({"metrics": {"unlearned/real/forget_rougeL_recall": 0.25}}))
    got = table.cells(sweep, [run.Outcome(job, tmp_path / "job", "completed")], {}, spec.metric_aliases(cpu))
    assert job.benchmark == "tofu_forget05" and {c["metric"]: c["value"] for c in got}["tofu/forget_rougeL_recall"] == 0.25
    assert "tofu/forget_rougeL_recall is real/forget_rougeL_recall" in table.markdown(sweep, "cpu", got, None,
                                                                                      spec.metric_aliases(cpu))


def test_a_model_unlearned_for_one_table_serves_the_others():
    """option-shuffle's WMDP-Bio TRU differs from standard-metrics' only in how it is evaluated (shuffled
    option orders): the same unlearned model in the store, trained once; a training setting is a new one."""
    from tru_cli import artifacts
    from tru_cli.config import compose

    def key(target: str, *extra: str) -> dict:
        paper_spec, cpu = spec.load(target, "cpu")
        job = next(j for j in spec.jobs(paper_spec, cpu, list(extra)) if j.benchmark == "wmdp_bio" and j.row == "tru")
        return artifacts.unlearn_key(compose(job.command, job.overrides), "target-dir", "targets-dir")

    shuffled = key("option-shuffle")
    assert "benchmark.wmdp.option_seeds=[1,2,3,4,5]" in spec.load("option-shuffle", "cpu")[0].overrides
    assert shuffled == key("standard-metrics") == key("table1")
    assert key("standard-metrics", "trainer.unlearn.lr=2e-4") != shuffled


def test_paper_scale_jobs_fit_one_80gb_gpu_with_the_batch_the_plan_picks():
    paper_spec, settings = spec.load("table2", "paper")
    plans = [plan.plan_job(job, settings) for job in spec.jobs(paper_spec, settings)]
    for p, cfg in plans:
        assert cfg.device.accelerator == "cuda" and cfg.trainer.get("lora") and cfg.judge.name == "openai"
        assert p.fits and p.memory_gib < 80 and cfg.trainer.unlearn.batch_size % p.per_device == 0
    models = {p.job.benchmark: cfg.model.name for p, cfg in plans}
    assert models == {"wmdp_bio": "zephyr-7b-beta", "tofu_forget05": "llama2-7b-chat"}
    totals = plan.summarize(plans, settings)
    # targets once per benchmark and prompt (TRU and its ablations share them; w/o Criteria has its own;
    # w/o L_target needs none); the judge asks 100 UQ and 100 RQ queries of each of the 10 models
    items = settings.forget_items
    assert totals["generator_requests"] == 2 * (items.wmdp_bio + items.tofu_forget05)
    assert totals["judge_requests"] == 10 * 2 * settings.judge_items
    assert totals["cost_usd"] > 0 and totals["device_hours"] > 0


@pytest.mark.slow
def test_make_table_plan_prints_the_plan_offline_and_starts_nothing(tmp_path):
    dry = subprocess.run(["make", "-n", "table1", "SCALE=paper", "PLAN=1"], cwd=ROOT, capture_output=True, text=True)
    assert "reproduce table1 --scale paper" in dry.stdout and "--plan" in dry.stdout
    proc = run_tru(["reproduce", "table1", "--scale", "paper", "--plan"], tmp_path)
    out = proc.stdout
    assert "44 jobs" in out and "Nothing was started" in out and "wmdp_bio/original" in out and "muse_news/rmu" in out
    assert "7,100 requests" in out  # generator: one target per forget item of the four benchmarks (estimates)
    assert "every job fits" in out
    assert not (tmp_path / ".tru_store").exists() and not (tmp_path / "runs").exists()  # no run, no store


def test_unknown_target_or_scale_is_one_line(tmp_path):
    for args, needle in ((["table9", "--plan"], "no paper target 'table9'; choose alpha-sweep"),
                         (["table1", "--scale", "gpu", "--plan"], "SCALE=gpu; choose cpu or paper")):
        proc = run_tru(["reproduce", *args], tmp_path, check=False)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr


def test_published_uq_is_the_mean_of_its_published_sub_scores():
    checked = 0
    for bench, rows in spec.published("table1").items():
        for row, values in rows.items():
            subs = [values[f"judge/uq_{k}"] for k in ("relevance", "rejection", "helpfulness")]
            assert values["judge/uq"] == pytest.approx(sum(subs) / 3, abs=0.006), (bench, row)
            checked += 1
    assert checked == 20
    # the ablation table's full TRU on WMDP-Bio is the main table's TRU
    assert spec.published("table2")["wmdp_bio"]["tru"]["judge/uq"] == spec.published("table1")["wmdp_bio"]["tru"]["judge/uq"]


@needs_shared
@pytest.mark.slow
def test_a_killed_target_resumes_with_the_same_command_and_asks_nothing_twice(tmp_path):
    """table2 at CPU scale, reduced (WMDP-Bio slice, two rows, the tiny model, generator and judge on
    the fake OpenAI server): killed once its first job has completed, then run again with the same
    command; the first job is reused, the table is written, and no request reached the server twice."""
    out = tmp_path / "table2"
    env = tru_env(tmp_path)

    def command(url: str) -> list[str]:
        chat = [override for section in ("generator", "judge") for override in
                (f"{section}=openai", f"{section}.base_url={url}", f"{section}.api_key_env=null")]
        return ["reproduce", "table2", "--scale", "cpu", "--benchmarks", "wmdp_bio", "--rows", "tru_no_ga,tru",
                "--data", str(SHARED_DATA), "--out", str(out), "model=tiny", "model.recipe.finetune_epochs=1",
                "benchmark.wmdp.mmlu=false", *chat]

    with FakeOpenAI() as server:
        proc = subprocess.Popen([*TRU, *command(server.url)], cwd=tmp_path, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first, second = (out / "wmdp_bio" / row / "results.json" for row in ("tru_no_ga", "tru"))
        deadline = time.time() + 900
        while time.time() < deadline and not (first.is_file() and '"completed"' in first.read_text()
                                              and second.is_file() and '"running"' in second.read_text()):
            assert proc.poll() is None, "tru reproduce ended before its second job started"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)  # the first job done, the second one running: killed midway
        proc.wait()
        asked_before = [r["question"] for r in server.log]
        assert asked_before, "the first job asked the generator and the judge"
        resumed = run_tru(command(server.url), tmp_path, env=env, timeout=900)
        asked = [r["question"] for r in server.log]
    assert "wmdp_bio/tru_no_ga: completed earlier, reused" in resumed.stderr
    assert len(asked) == len(set(asked)), "a request reached the server twice"
    text = (out / "report" / "table.md").read_text()
    assert "| tru_no_ga |" in text and "| tru |" in text and "CPU scale" in text
    for row in ("tru_no_ga", "tru"):
        res = json.loads((out / "wmdp_bio" / row / "results.json").read_text())
        assert res["status"] == "completed" and res["metrics"]["unlearned/judge/uq"] is not None
    assert (out / "report" / "table.csv").is_file() and (out / "report" / "table2.png").is_file()


def test_shuffled_options_move_the_answer_with_its_option_and_count_flips():
    from tru_cli.metrics import shuffle

    rows = [{"question": f"q{i}", "choices": ["w", "x", "y", "z"], "answer": i % 4} for i in range(8)]
    orders = [shuffle.permuted(rows, seed) for seed in (1, 2, 3)]
    for asked in orders:
        assert [r["choices"][r["answer"]] for r in asked] == [r["choices"][r["answer"]] for r in rows]
    assert len({tuple(r["choices"]) for asked in orders for r in asked}) > 1  # the orders differ
    assert shuffle.permuted(rows, 1) == orders[0]  # seeded: the same every time
    summary = shuffle.summarize({1: [True, True, False], 2: [True, False, False]})
    assert summary["acc_mean"] == pytest.approx(0.5) and summary["flips"] == pytest.approx(1 / 3)
