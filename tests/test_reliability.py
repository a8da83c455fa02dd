"""Reliability under bad input: a battery of bad inputs through the real CLI (Typer's runner, in this
process, so each case takes a fraction of a second), each answered by exit code 2 and one line on
stderr that names the key, file or value, with no traceback, no run folder and no store entry; a few
of them again in a real subprocess; two commands started together in one folder; and answers that
cannot be parsed from an endpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import SHARED_DATA, SMALL, TRU, needs_shared, results, run_tru, tru_env
from tests.fake_openai import FakeOpenAI

QA = [{"question": f"Who wrote book {i}?", "answer": f"Author {i} wrote it."} for i in range(4)]


def jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_model):
    """Broken inputs of every kind, each in a folder of its own."""
    root = tmp_path_factory.mktemp("bad")
    (root / "afile").write_text("a file where a folder belongs")
    # TOFU-format data folders, each broken in one way
    (root / "utf16").mkdir()
    (root / "utf16" / "forget10.jsonl").write_bytes("\n".join(json.dumps(r) for r in QA).encode("utf-16"))
    (root / "binary").mkdir()
    (root / "binary" / "forget10.jsonl").write_bytes(bytes(range(128, 256)) * 4)
    jsonl(root / "field" / "forget10.jsonl", [{"query": r["question"], "answer": r["answer"]} for r in QA])
    (root / "malformed").mkdir()
    (root / "malformed" / "forget10.jsonl").write_text(json.dumps(QA[0]) + '\n{"question": "q2", "answer"\n')
    jsonl(root / "pert_str" / "forget10.jsonl", QA)
    jsonl(root / "pert_str" / "forget10_perturbed.jsonl", [{**r, "perturbed_answer": "one answer"} for r in QA])
    jsonl(root / "empty_retain" / "forget10.jsonl", QA)
    (root / "empty_retain" / "retain90.jsonl").write_text("")
    (root / "array").mkdir()
    (root / "array" / "forget10.jsonl").write_text("[1, 2, 3]\n")
    jsonl(root / "answer_int" / "forget10.jsonl", [{**r, "answer": 5} for r in QA])
    jsonl(root / "para_list" / "forget10.jsonl", [{**r, "paraphrased_answer": ["a", "b"]} for r in QA])
    mcq = [{"question": "Which is a virus?", "choices": ["a", "b", "c", "d"], "answer": 1}]
    jsonl(root / "wmdp_3" / "bio_200.jsonl", [{**mcq[0], "choices": ["a", "b", "c"]}])
    jsonl(root / "wmdp_idx" / "bio_200.jsonl", [{**mcq[0], "answer": 7}])
    jsonl(root / "wmdp_str" / "bio_200.jsonl", [{**mcq[0], "answer": "B"}])
    (root / "muse_gt" / "verbmem").mkdir(parents=True)
    (root / "muse_gt" / "verbmem" / "forget.json").write_text(json.dumps([{"prompt": "The minister said"}]))
    (root / "muse_raw" / "raw").mkdir(parents=True)
    (root / "muse_raw" / "raw" / "forget.txt").write_bytes("Le ministre a dit".encode("utf-16"))
    # model folders: a good one, then broken copies
    from tru_cli.models import loading

    model, tok = tiny_model(["a b c d e f g h"] * 20, vocab_size=300)
    good = root / "model_good"
    loading.save(model, tok, good)
    weights = good / "model.safetensors"
    for name in ("model_truncated", "model_zeroed", "model_pickled", "model_vocab", "model_noconfig"):
        shutil.copytree(good, root / name)
    data = weights.read_bytes()
    (root / "model_truncated" / "model.safetensors").write_bytes(data[: len(data) // 2])
    (root / "model_zeroed" / "model.safetensors").write_bytes(bytes(len(data)))
    (root / "model_pickled" / "model.safetensors").unlink()
    (root / "model_pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    config = json.loads((good / "config.json").read_text())
    (root / "model_vocab" / "config.json").write_text(json.dumps({**config, "vocab_size": 8}))
    (root / "model_noconfig" / "config.json").unlink()
    # targets, IDK answers, logs and results files
    jsonl(root / "targets_norefusal.jsonl", [{"id": "forget10-0000", "reasoning": "why"}])
    (root / "logs_binary").mkdir()
    (root / "logs_binary" / "tofu_forget.jsonl").write_bytes(bytes(range(128, 256)))
    (root / "logs_truncated").mkdir()
    (root / "logs_truncated" / "tofu_forget.jsonl").write_text('{"avg_gt_loss": 1.2, "rougeL_re')
    jsonl(root / "logs_strings" / "tofu_forget.jsonl", [{"avg_gt_loss": "high", "rougeL_recall": 0.5}])
    jsonl(root / "logs_nometrics" / "tofu_forget.jsonl", [{"id": "1", "question": "q"}])
    jsonl(root / "logs_perturb" / "tofu_forget.jsonl", [{"avg_gt_loss": 1.0, "average_perturb_loss": "2.0"}])
    for name, text in (("garbage", "not json at all"), ("list", "[]"), ("nometrics", '{"command": "eval"}'),
                       ("badmetric", '{"command": "eval", "status": "completed", "metrics": {"tofu/x": "n/a"}}')):
        (root / f"results_{name}").mkdir()
        (root / f"results_{name}" / "results.json").write_text(text)
    return root


def data(kind: str, folder: str, *extra: str) -> list[str]:
    return [f"benchmark={kind}", f"benchmark.data_dir={{bad}}/{folder}", *extra]


# (command and arguments, a piece of the one line that must name the problem)
CASES = {
    # numbers and types of the config
    "lr_negative": (["unlearn", "trainer.unlearn.lr=-1"], "trainer.unlearn.lr=-1 must be a number > 0"),
    "lr_zero": (["unlearn", "trainer.unlearn.lr=0"], "trainer.unlearn.lr=0 must be a number > 0"),
    "lr_text": (["unlearn", "trainer.unlearn.lr=abc"], "trainer.unlearn.lr=abc must be a number > 0"),
    "finetune_lr": (["finetune", "trainer.finetune.lr=-0.001"], "trainer.finetune.lr=-0.001"),
    "epochs_zero": (["unlearn", "model.recipe.unlearn_epochs=0"], "trainer.unlearn.epochs=0 must be a number > 0"),
    "epochs_negative": (["unlearn", "trainer.unlearn.epochs=-1"], "trainer.unlearn.epochs=-1"),
    "finetune_epochs": (["finetune", "model.recipe.finetune_epochs=0"], "trainer.finetune.epochs=0"),
    "batch_zero": (["unlearn", "trainer.unlearn.batch_size=0"], "trainer.unlearn.batch_size=0 must be an integer >= 1"),
    "batch_fraction": (["unlearn", "trainer.unlearn.batch_size=2.5"], "trainer.unlearn.batch_size=2.5"),
    "device_batch": (["unlearn", "trainer.unlearn.per_device_batch_size=0"], "per_device_batch_size=0"),
    "finetune_batch": (["finetune", "trainer.finetune.batch_size=-4"], "trainer.finetune.batch_size=-4"),
    "seed_text": (["unlearn", "seed=abc"], "seed=abc must be an integer"),
    "seed_fraction": (["unlearn", "seed=1.5"], "seed=1.5 must be an integer"),
    "eval_batch": (["eval", "eval.batch_size=0"], "eval.batch_size=0 must be an integer >= 1"),
    "new_tokens_negative": (["eval", "eval.max_new_tokens=-1"], "eval.max_new_tokens=-1"),
    "new_tokens_zero": (["eval", "eval.max_new_tokens=0"], "eval.max_new_tokens=0"),
    "max_items_negative": (["eval", "eval.max_items=-5"], "eval.max_items=-5 must be an integer >= 1 or null"),
    "max_items_zero": (["eval", "eval.max_items=0"], "eval.max_items=0"),
    "show_examples": (["eval", "eval.show_examples=-1"], "eval.show_examples=-1"),
    "max_length": (["unlearn", "model.max_length=0"], "model.max_length=0"),
    "logging_steps": (["unlearn", "trainer.logging_steps=0"], "trainer.logging_steps=0"),
    "alpha": (["unlearn", "method.alpha=-0.1"], "method.alpha=-0.1 must be a number >= 0"),
    "lambda": (["unlearn", "method.lambda_retain=-1"], "method.lambda_retain=-1"),
    "beta": (["unlearn", "method=npo", "method.beta=0"], "method.beta=0 must be a number > 0"),
    "warmup": (["unlearn", "trainer.unlearn.warmup_ratio=-0.1"], "trainer.unlearn.warmup_ratio=-0.1"),
    "weight_decay": (["unlearn", "trainer.unlearn.weight_decay=-1"], "trainer.unlearn.weight_decay=-1"),
    "grad_norm": (["unlearn", "trainer.unlearn.max_grad_norm=0"], "trainer.unlearn.max_grad_norm=0"),
    "attempts": (["generate-targets", "generator=openai", "generator.max_attempts=0"], "generator.max_attempts=0"),
    "concurrency": (["generate-targets", "generator=openai", "generator.concurrency=0"], "generator.concurrency=0"),
    "timeout": (["generate-targets", "generator=openai", "generator.timeout=0"], "generator.timeout=0"),
    "retries": (["generate-targets", "generator=openai", "generator.max_retries=-1"], "generator.max_retries=-1"),
    "judge_items": (["eval", "judge=openai", "judge.max_items=0"], "judge.max_items=0"),
    "hf_batch": (["generate-targets", "generator=hf", "generator.batch_size=0"], "generator.batch_size=0"),
    "chunk_words": (["eval", "benchmark=muse_news", "benchmark.chunk_words=0"], "benchmark.chunk_words=0"),
    "processes": (["unlearn", "device.num_processes=0"], "device.num_processes=0"),
    "relearn_steps": (["attack", "attack=relearn", "attack.steps=[-1,5]"], "attack.steps=[-1, 5]"),
    "icl_shots": (["attack", "attack=icl", "attack.shots=-1"], "attack.shots=-1"),
    "prefill_words": (["attack", "attack=prefill", "attack.prefill_words=0"], "attack.prefill_words=0"),
    "suite_rank": (["attack", "attack=suite", "attack.settings.relearn.lora_rank=0"],
                   "attack.settings.relearn.lora_rank=0"),
    "three_at_once": (["unlearn", "trainer.unlearn.lr=-1", "seed=abc", "eval.batch_size=0"], "3 problems: "),
    # paths that cannot be written
    "store_path": (["unlearn", "paths.store={bad}/afile/store"], "paths.store={bad}/afile/store cannot be written"),
    "runs_path": (["unlearn", "paths.runs={bad}/afile/runs"], "paths.runs={bad}/afile/runs cannot be written"),
    "run_dir": (["eval", "hydra.run.dir={bad}/afile/run"], "hydra.run.dir={bad}/afile/run cannot be written"),
    "sweep_dir": (["eval", "-m", "seed=1,2", "hydra.sweep.dir={bad}/afile/sweep"], "hydra.sweep.dir="),
    # flags, keys and options
    "unknown_flag": (["unlearn", "--frobnicate"], "unknown flag --frobnicate"),
    "unknown_short_flag": (["eval", "-x"], "unknown flag -x"),
    "long_key": (["unlearn", "a" * 100_000 + "=1"], "has 100000 characters"),
    "unknown_option": (["unlearn", "model=llama9"], "unknown option 'model=llama9'"),
    "unknown_key": (["unlearn", "method.alhpa=0.2"], "unknown key 'method.alhpa'"),
    "forget_split": (["unlearn", "benchmark=tofu", "benchmark.forget_split=forget07"], "forget07"),
    "two_modes": (["unlearn", "-m", "--cfg", "job"], "cannot be combined"),
    "sweep_option": (["pipeline", "-m", "method=tru,nosuch"], "method=nosuch"),
    # data files
    "data_dir_missing": (["eval", *data("tofu", "nosuch")], "benchmark.data_dir={bad}/nosuch is not a directory"),
    "data_dir_file": (["eval", *data("tofu", "afile")], "is not a directory"),
    "utf16": (["eval", *data("tofu", "utf16")], "forget10.jsonl is not UTF-8 text"),
    "binary": (["eval", *data("tofu", "binary")], "forget10.jsonl is not UTF-8 text"),
    "wrong_field": (["eval", *data("tofu", "field")], "forget10.jsonl row 1 has no 'question' field"),
    "malformed_line": (["eval", *data("tofu", "malformed")], "forget10.jsonl line 2: malformed JSON"),
    "perturbed_string": (["eval", *data("tofu", "pert_str")], "'perturbed_answer' is a str, not a list"),
    "empty_retain": (["unlearn", *data("tofu", "empty_retain")], "retain90.jsonl holds no rows"),
    "row_not_object": (["eval", *data("tofu", "array")], "expected a JSON object"),
    "answer_number": (["eval", *data("tofu", "answer_int")], "'answer' is a int, not a str"),
    "paraphrase_list": (["eval", *data("tofu", "para_list")], "'paraphrased_answer' is a list, not a str"),
    "mcq_choices": (["eval", *data("wmdp_bio", "wmdp_3")], "needs 4 'choices'"),
    "mcq_index": (["eval", *data("wmdp_bio", "wmdp_idx")], "needs 4 'choices' and an 'answer' index"),
    "mcq_letter": (["eval", *data("wmdp_bio", "wmdp_str")], "'answer' is a str, not a int"),
    "muse_no_gt": (["eval", *data("muse_news", "muse_gt")], "forget.json row 1 has no 'gt' field"),
    "muse_corpus_utf16": (["unlearn", *data("muse_news", "muse_raw")], "forget.txt is not UTF-8 text"),
    # model folders
    "model_truncated": (["eval", "model.path={bad}/model_truncated"], "model.safetensors is truncated"),
    "model_zeroed": (["eval", "model.path={bad}/model_zeroed"], "is not a safetensors file"),
    "model_pickled": (["eval", "model.path={bad}/model_pickled"], "only the pickled pytorch_model.bin"),
    "model_vocab": (["eval", "model.path={bad}/model_vocab"], "vocabulary has 8 (config.json vocab_size)"),
    "model_noconfig": (["eval", "model.path={bad}/model_noconfig"], "has no readable config.json"),
    "model_empty_dir": (["unlearn", "model.path={bad}/logs_nometrics"], "has no .safetensors weights"),
    "reference_model": (["attack", "attack=icl", "attack.reference_model={bad}/model_zeroed"],
                        "attack.reference_model: {bad}/model_zeroed"),
    # targets, IDK answers, related text, logs
    "targets_missing": (["unlearn", "unlearn.targets={bad}/nosuch.jsonl"], "unlearn.targets={bad}/nosuch.jsonl does not exist"),
    "targets_fields": (["unlearn", "unlearn.targets={bad}/targets_norefusal.jsonl"], "row 1 has no 'refusal' field"),
    "idk_missing": (["unlearn", "method=idkpo", "method.idk_file={bad}/nosuch.txt"], "method.idk_file="),
    "text_missing": (["attack", "attack=relearn", "attack.data=text", "attack.text_file={bad}/nosuch.jsonl"],
                     "attack.text_file={bad}/nosuch.jsonl does not exist"),
    "logs_binary": (["eval", "eval.from_logs={bad}/logs_binary"], "tofu_forget.jsonl is not UTF-8 text"),
    "logs_truncated": (["eval", "eval.from_logs={bad}/logs_truncated"], "tofu_forget.jsonl line 1: malformed JSON"),
    "logs_strings": (["eval", "eval.from_logs={bad}/logs_strings"], "avg_gt_loss='high' must be a number"),
    "logs_no_metrics": (["eval", "eval.from_logs={bad}/logs_nometrics"], "has none of avg_gt_loss"),
    "logs_perturb": (["eval", "eval.from_logs={bad}/logs_perturb"], "average_perturb_loss must be a list"),
    "logs_missing": (["eval", "eval.from_logs={bad}/nosuch"], "log directory {bad}/nosuch does not exist"),
    "retain_logs": (["eval", "eval.from_logs={bad}/logs_binary", "eval.retain_logs={bad}/nosuch"], "eval.retain_logs"),
    # tru report
    "report_garbage": (["report", "{bad}/results_garbage"], "results.json is not JSON"),
    "report_list": (["report", "{bad}/results_list"], "results.json is not a tru results file"),
    "report_no_metrics": (["report", "{bad}/results_nometrics"], "results.json is not a tru results file"),
    "report_bad_metric": (["report", "{bad}/results_badmetric"], "metric tofu/x='n/a' is not a number"),
    "report_missing": (["report", "{bad}/nosuch"], "does not exist"),
    "report_out": (["report", "{bad}/model_good/..", "--out", "{bad}/afile/report"], "cannot be written"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_before_anything_loads(name, bad, tmp_path, monkeypatch):
    from tru_cli.cli import app

    args, needle = CASES[name]
    args = [a.replace("{bad}", str(bad)) for a in args]
    monkeypatch.chdir(tmp_path)
    if name == "report_out":  # a real run folder to report on
        jsonl(tmp_path / "run" / "results.json", [{"command": "eval", "status": "completed", "metrics": {}}])
        args[1] = str(tmp_path / "run")
    result = CliRunner().invoke(app, args, env=tru_env(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr[-1500:], result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-1500:]
    assert needle.replace("{bad}", str(bad)) in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".tru_store").exists()  # nothing started


def test_the_battery_is_large_and_every_input_kind_is_in_it():
    assert len(CASES) >= 60
    kinds = {"config": "must be", "paths": "cannot be written", "data": "benchmark.data_dir",
             "models": "model.path", "logs": "eval.from_logs", "report": "report"}
    for kind, marker in kinds.items():
        assert any(marker in " ".join(args) + needle for args, needle in CASES.values()), kind


@pytest.mark.parametrize("args,code,needle", [
    (["unlearn", "trainer.unlearn.lr=-1", "seed=abc"], 2, "2 problems: seed=abc must be an integer"),
    (["eval", "--frobnicate"], 2, "unknown flag --frobnicate"),
])
def test_a_real_process_answers_bad_input_in_one_line(tmp_path, args, code, needle):
    proc = subprocess.run([*TRU, *args], cwd=tmp_path, env=tru_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code and len(lines) == 1 and needle in lines[0], proc.stderr[-1500:]


def test_a_late_failure_is_one_line_exit_1_and_recorded(tmp_path):
    """An endpoint that answers 200 with a body that is not JSON: found only when asked, so the run
    has started; it ends in one line, exit code 1, and results.json says failed with the reason."""
    with FakeOpenAI(faults=[{"match": "", "sequence": ["garbage"] * 50}]) as server:
        proc = run_tru(["generate-targets", *SMALL, "generator=openai", f"generator.base_url={server.url}",
                        "generator.api_key_env=null", "generator.max_retries=0", "logger=none",
                        f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-2000:]
    assert "is not an OpenAI chat completion" in lines[0] and "Traceback" not in proc.stderr
    res = results(tmp_path / "run")
    assert res["status"] == "failed" and "not an OpenAI chat completion" in res["error"]


@pytest.mark.slow
def test_two_commands_started_together_get_two_run_dirs_and_share_one_store(tmp_path):
    """Two `tru unlearn` started at once in one folder, their run dir resolving to the same name (as two
    commands started in the same second do): each claims its own folder, the finetuned model they
    both need is built once, and both finish."""
    args = ["unlearn", *SMALL, "logger=none", "hydra.run.dir=${tru.fresh_dir:runs/same}"]
    env = tru_env(tmp_path, OMP_NUM_THREADS="1")  # one core each: two torch processes on two cores
    procs = [subprocess.Popen([*TRU, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-1500:] for o in outs]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["same", "same-1"]
    for name in ("same", "same-1"):
        res = results(tmp_path / "runs" / name)
        assert res["status"] == "completed" and (tmp_path / "runs" / name / "model" / "model.safetensors").is_file()
    built = [p for p in (tmp_path / ".tru_store" / "finetune-full").iterdir() if (p / "DONE").is_file()]
    assert len(built) == 1
    assert sum("finetune (full)" in o for o in outs) == 1 and sum("reusing finetune-full" in o for o in outs) == 1


@pytest.mark.slow
def test_kills_at_every_stage_lose_nothing_finished_and_end_where_an_unkilled_run_ends(tmp_path):
    """Kill `tru pipeline` each time one more stage has finished (so every kill lands inside the next
    stage), until a rerun finishes on its own: only complete store entries are reused, and the final
    metrics equal those of a pipeline that was never killed."""
    killed = tmp_path / "killed"
    killed.mkdir()
    store = killed / ".tru_store"

    def finished() -> int:
        return len(list(store.glob("*/*/DONE")))

    kills = 0
    while True:
        before = finished()
        proc = subprocess.Popen([*TRU, "pipeline", *SMALL, "logger=none", f"hydra.run.dir={killed / 'run'}"],
                                cwd=killed, env=tru_env(killed), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None and finished() == before:
            time.sleep(0.1)
        if proc.poll() is not None:
            break
        proc.kill()
        proc.wait()
        kills += 1
        assert not [p for p in store.glob("*/*") if p.is_dir() and not (p / "DONE").is_file()
                    and not p.name.endswith(".partial")], "an entry without DONE outside a .partial folder"
    print(f"kills: {kills}")  # shown with -s: the note of the run quotes it
    assert proc.returncode == 0 and kills >= 4  # finetune x2, eval, targets, unlearn, evals: a kill in each
    clean = tmp_path / "clean"
    clean.mkdir()
    run_tru(["pipeline", *SMALL, "logger=none", f"hydra.run.dir={clean / 'run'}"], clean)
    a, b = results(killed / "run")["metrics"], results(clean / "run")["metrics"]
    timing = ("seconds", "per_second")
    assert {k: v for k, v in a.items() if not any(t in k for t in timing)} == \
        {k: v for k, v in b.items() if not any(t in k for t in timing)}


def test_fresh_dir_claims_a_new_folder_per_process_and_keeps_it_within_one(tmp_path, monkeypatch):
    from tru_cli import config

    monkeypatch.setattr(config, "_FRESH", {})
    base = str(tmp_path / "runs" / "unlearn" / "2026-11-30_17-00-00")
    assert config.fresh_dir(base) == base and config.fresh_dir(base) == base  # the same process: one folder
    monkeypatch.setattr(config, "_FRESH", {})  # as another process would start
    assert config.fresh_dir(base) == base + "-1"
    monkeypatch.setattr(config, "_FRESH", {})
    assert config.fresh_dir(base) == base + "-2"


def test_the_default_run_dir_is_claimed_through_fresh_dir(config):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tru_cli.config import COMMAND_CONFIGS, conf_dir, searchpath_override

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir()), job_name="eval"):
        cfg = hydra_compose(COMMAND_CONFIGS["eval"], overrides=searchpath_override(), return_hydra_config=True)
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert raw["run"]["dir"].startswith("${tru.fresh_dir:") and raw["sweep"]["dir"].startswith("${tru.fresh_dir:")


def test_rejected_targets_are_asked_again_by_the_rerun_and_nothing_else_is(config, tmp_path):
    """A server that answers one item with an empty reply three times: the run fails naming the one
    missing target; the same command against a healthy server asks for that item alone and finishes."""
    from tru_cli.data import sources

    cfg = config("generate-targets", *SMALL)
    questions = [r["question"] for r in sources.load_split(cfg.benchmark, cfg.benchmark.forget_split)]
    args = ["generate-targets", *SMALL, "generator=openai", "generator.api_key_env=null", "logger=none",
            f"hydra.run.dir={tmp_path / 'run'}"]
    with FakeOpenAI(faults=[{"match": questions[4], "sequence": ["say:"] * 3}]) as server:
        proc = run_tru([*args, f"generator.base_url={server.url}"], tmp_path, check=False)
        first = len(server.log)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and lines == [
        f"error: 1 of {len(questions)} forget items got no usable target (answers so far are cached); rerun the "
        "same command to ask for them again, or set generator.allow_missing=true to unlearn without them"]
    assert first == len(questions) + 2  # the empty item was asked three times
    with FakeOpenAI() as server:
        run_tru([*args, f"generator.base_url={server.url}"], tmp_path)
        assert [r["question"] for r in server.log] == [questions[4]]
    m = results(tmp_path / "run")["metrics"]
    assert m["generator/reasked"] == 1 and m["generator/cached"] == len(questions) + 2
    assert m["targets/count"] == len(questions)


def test_a_generator_budget_stops_in_one_line_and_the_rerun_buys_only_the_rest(config, tmp_path):
    """generator.budget_usd: the run stops before a request would pass it, keeping what it bought; the
    same command with a larger budget asks only for the targets not yet bought (no request twice)."""
    from tru_cli.data import sources

    cfg = config("generate-targets", *SMALL)
    questions = [r["question"] for r in sources.load_split(cfg.benchmark, cfg.benchmark.forget_split)]
    args = ["generate-targets", *SMALL, "generator=openai", "generator.api_key_env=null", "logger=none",
            "generator.price_per_mtok={input: 1000, output: 1000}", "generator.max_tokens=300",
            "generator.concurrency=1", f"hydra.run.dir={tmp_path / 'run'}"]
    with FakeOpenAI() as server:
        proc = run_tru([*args, f"generator.base_url={server.url}", "generator.budget_usd=2"], tmp_path, check=False)
        first = [r["question"] for r in server.log]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: generator.budget_usd=2.0 would be passed by the next request: $")
    assert 0 < len(first) < len(questions) and results(tmp_path / "run")["status"] == "failed"
    with FakeOpenAI() as server:
        run_tru([*args, f"generator.base_url={server.url}", "generator.budget_usd=1000"], tmp_path)
        second = [r["question"] for r in server.log]
    assert not set(first) & set(second) and sorted(first + second) == sorted(questions)
    assert results(tmp_path / "run")["metrics"]["targets/count"] == len(questions)


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody can write into, root included (immutable), or a skip where chattr cannot."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here (it needs root on a filesystem that supports it)")
    yield folder
    subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("args,needle", [
    (["unlearn", "paths.store={ro}/store"], "paths.store={ro}/store cannot be written"),
    (["eval", "hydra.run.dir={ro}/run"], "hydra.run.dir={ro}/run cannot be written"),
    (["report", "{run}", "--out", "{ro}/report"], "the report folder {ro}/report cannot be written"),
    (["unlearn"], "paths.runs=runs cannot be written"),  # started in a read-only working directory
])
def test_read_only_folders_are_refused_in_one_line(read_only_dir, tmp_path, monkeypatch, args, needle):
    from tru_cli.cli import app

    run = tmp_path / "run"
    jsonl(run / "results.json", [{"command": "eval", "status": "completed", "metrics": {}}])
    args = [a.replace("{ro}", str(read_only_dir)).replace("{run}", str(run)) for a in args]
    monkeypatch.chdir(read_only_dir if args == ["unlearn"] else tmp_path)
    result = CliRunner().invoke(app, args, env=tru_env(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, (result.stderr[-1500:], result.exception)
    assert needle.replace("{ro}", str(read_only_dir)) in lines[0], lines[0]


@needs_shared
def test_real_slices_and_a_saved_model_pass_every_check(config, bad):
    """No false alarms: the shared TOFU, MUSE and WMDP slices and a model saved by tru pass."""
    from tru_cli import preflight
    from tru_cli.models import checks as model_checks

    for overrides in (["benchmark=tofu", f"benchmark.data_dir={SHARED_DATA / 'tofu'}", "benchmark.forget_split=forget05"],
                      ["benchmark=muse_news", f"benchmark.data_dir={SHARED_DATA / 'muse' / 'news'}"],
                      ["benchmark=muse_books", f"benchmark.data_dir={SHARED_DATA / 'muse' / 'books'}"],
                      ["benchmark=wmdp_bio", f"benchmark.data_dir={SHARED_DATA / 'wmdp'}"]):
        for command in ("eval", "unlearn"):
            assert preflight.problems(command, config(command, *overrides)) == [], overrides
    logs = SHARED_DATA / "tofu" / "reference_logs" / "llama2-7b_full"
    assert preflight.problems("eval", config("eval", f"eval.from_logs={logs}")) == []
    assert model_checks.problems(bad / "model_good") == []
