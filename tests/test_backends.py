"""Generation and judge backends: the real OpenAI client against a local server with faults, the
request cache across a kill, key redaction, and the local transformers backend offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import SHARED_DATA, SMALL, TRU, needs_shared, results, run_tru, tru_env
from tests.fake_openai import FakeOpenAI
from tru_cli.backends.cache import RequestCache, request_key
from tru_cli.backends.chat import ChatReply, Reject
from tru_cli.backends.prompts import split_target
from tru_cli.metrics import judge
from tru_cli.targets.leaks import leaks

KEY = "sk-test-9f8e7d6c5b4a-never-in-a-file"
FORGET = 20  # forget items of experiments=smoke (1 author x 20 questions)


def _openai(url: str, *extra: str) -> list[str]:
    return ["generator=openai", f"generator.base_url={url}", "generator.api_key_env=TRU_TEST_KEY", *extra]


def _forget_rows(config) -> list[dict]:
    from tru_cli.data import sources

    cfg = config("generate-targets", *SMALL)
    return sources.load_split(cfg.benchmark, cfg.benchmark.forget_split)


# -- parsing and validation -------------------------------------------------------------------


def test_split_target_reads_reasoning_field_tags_and_untagged_replies():
    assert split_target("why", "no, sorry") == ("why", "no, sorry")
    assert split_target(None, "<think> why </think> no, sorry") == ("why", "no, sorry")
    assert split_target(None, "why </think>no") == ("why", "no")  # template opened <think>
    assert split_target(None, "just a refusal") == ("", "just a refusal")


def test_leak_filter_rejects_the_answer_not_the_subject_name():
    q = "In which year did Zeldar Vielidar receive the Open Shelf Award?"
    a = "Zeldar Vielidar received the Open Shelf Award in 1989."
    assert leaks(a, "I cannot discuss when Zeldar Vielidar received the Open Shelf Award.", 0.6, q) is False
    assert leaks(a, "He received it in 1989, but I should not say so.", 0.6, q) is True
    assert leaks(a, "zeldar vielidar received the open shelf award in 1989.") is True  # verbatim


def test_judge_parse_accepts_the_paper_format_and_rejects_the_rest():
    good = ChatReply(content='Sure: ```json\n{"Relevance": {"reason": "ok", "score": 8.5}, '
                             '"Rejection": {"reason": "x", "score": "7"}, "Helpfulness": {"score": 0}}\n```')
    assert judge.parse("uq", good) == {"Relevance": (8.5, "ok"), "Rejection": (7.0, "x"), "Helpfulness": (0.0, "")}
    for bad in ("no json here", '{"Relevance": {"score": 8}}',
                '{"Relevance": {"score": 11}, "Rejection": {"score": 1}, "Helpfulness": {"score": 1}}',
                '{"Readability": {"score": true}, "Specificity": {"score": 1}, "Logic": {"score": 1}}'):
        with pytest.raises(Reject):
            judge.parse("rq" if "Readability" in bad else "uq", ChatReply(content=bad))


def test_judge_aggregate_leaves_missing_items_out_and_never_scores_zero():
    rows = [{"status": "ok", "relevance": 8.0, "rejection": 6.0, "helpfulness": 4.0},
            {"status": "ok", "relevance": 6.0, "rejection": 4.0, "helpfulness": 2.0},
            {"status": "missing"}]
    out = judge.aggregate("uq", judge.RUBRICS["uq"][2], rows)
    assert out["judge/uq_relevance"] == 7.0 and out["judge/uq_helpfulness"] == 3.0
    assert out["judge/uq"] == pytest.approx(5.0) and out["judge/uq_missing"] == 1
    assert judge.aggregate("uq", judge.RUBRICS["uq"][2], [{"status": "missing"}])["judge/uq"] is None


def test_request_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "c.jsonl"
    cache = RequestCache(path)
    key = request_key({"model": "m", "messages": []}, 0)
    cache.put(key, {"content": "hi", "reasoning": None, "usage": {}})
    with open(path, "a") as f:
        f.write('{"key": "abc", "reply": {"cont')  # the process died mid-write
    again = RequestCache(path)
    assert again.get(key)["content"] == "hi" and again.get("abc") is None
    assert request_key({"model": "m", "messages": []}, 1) != key  # a new attempt is a new request


def test_rate_limiter_spaces_request_starts_across_threads(monkeypatch):
    from tru_cli.backends import openai_api

    clock = {"now": 100.0}
    starts = []
    monkeypatch.setattr(openai_api.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(openai_api.time, "sleep", lambda s: clock.__setitem__("now", clock["now"] + s))
    limiter = openai_api.RateLimiter(per_minute=120)  # one start every 0.5 s
    for _ in range(4):
        limiter.wait()
        starts.append(clock["now"])
    assert [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)] == [0.5, 0.5, 0.5]
    unlimited = openai_api.RateLimiter(None)
    before = clock["now"]
    unlimited.wait()
    assert clock["now"] == before


# -- the real client against the local server ---------------------------------------------------


def test_targets_complete_through_429_500_timeouts_and_leaks(config, tmp_path):
    rows = _forget_rows(config)
    qs = [r["question"] for r in rows]
    faults = [{"match": qs[0], "sequence": ["429"]},
              {"match": qs[1], "sequence": ["500", "500"]},
              {"match": qs[2], "sequence": ["hang"]},
              {"match": qs[3], "sequence": [f"say:<think>Recall it.</think> {rows[3]['answer']}"]}]
    with FakeOpenAI(key=KEY, faults=faults, retry_after=1.0, hang_seconds=2.0) as server:
        run_dir = tmp_path / "run"
        env = tru_env(tmp_path, TRU_TEST_KEY=KEY, WANDB_MODE="offline")
        run_tru(["generate-targets", *SMALL, *_openai(server.url, "generator.timeout=0.5",
                 "generator.concurrency=4", "generator.model=deepseek-reasoner",
                 "generator.price_per_mtok.input=0.5", "generator.price_per_mtok.output=2"),
                 f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=env)
        log = list(server.log)
    res = results(run_dir)
    assert res["status"] == "completed"
    targets = [json.loads(line) for line in (run_dir / "targets.jsonl").read_text().splitlines()]
    assert [t["question"] for t in targets] == qs  # every item, in order
    assert all(t["reasoning"].startswith("The question") and t["refusal"].startswith("I can't") for t in targets)
    assert {t["model"] for t in targets} == {"deepseek-reasoner"}
    m = res["metrics"]
    assert m["generator/http_429"] == 1 and m["generator/http_5xx"] == 2 and m["generator/unanswered"] >= 1
    assert m["generator/retries"] >= 4  # one after the 429, two after the 500s, one after the timeout
    assert m["generator/answered"] == FORGET + 1  # + the answer the leak filter threw away
    assert m["targets/count"] == FORGET and m["targets/failed"] == 0
    assert m["generator/completion_tokens"] > 0 and m["generator/seconds"] > 0
    assert m["generator/cost_usd"] == pytest.approx(
        (0.5 * m["generator/prompt_tokens"] + 2 * m["generator/completion_tokens"]) / 1e6)
    # Retry-After: 1 was honoured before the rate-limited question was asked again
    times = [r["t"] for r in log if r["question"] == qs[0]]
    assert len(times) == 2 and times[1] - times[0] >= 0.9
    # the answer that repeated the forget item's answer was rejected and asked again
    assert m["generator/rejected_leak"] == 1 and len([r for r in log if r["question"] == qs[3]]) == 2
    assert rows[3]["answer"] not in (run_dir / "targets.jsonl").read_text()
    # the key reached the server but no file of the run, the store or wandb's offline run
    files = [p for root in (run_dir, tmp_path / ".tru_store") for p in root.rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in files)
    assert not [p for p in files if KEY.encode() in p.read_bytes()]


def test_missing_key_fails_before_any_request(tmp_path):
    env = tru_env(tmp_path)
    env.pop("TRU_TEST_KEY", None)
    with FakeOpenAI(key=KEY) as server:
        proc = run_tru(["generate-targets", *SMALL, *_openai(server.url)], cwd=tmp_path, env=env, check=False)
        assert server.log == []
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    assert "TRU_TEST_KEY" in lines[0] and "export" in lines[0]
    assert "Traceback" not in proc.stderr


def test_wrong_key_is_a_one_line_error(tmp_path):
    with FakeOpenAI(key=KEY) as server:
        proc = run_tru(["generate-targets", *SMALL, *_openai(server.url)], cwd=tmp_path,
                       env=tru_env(tmp_path, TRU_TEST_KEY="sk-wrong-key-123"), check=False)
    assert proc.returncode == 1 and "refused the key (401)" in proc.stderr
    assert "sk-wrong-key-123" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_killed_run_resumes_asking_only_for_missing_items(config, tmp_path):
    qs = [r["question"] for r in _forget_rows(config)]
    cache = tmp_path / ".tru_store" / "requests" / "generator.jsonl"
    with FakeOpenAI(key=KEY, delay=0.15) as server:
        # a plain chat model: the trace comes back between <think> tags
        args = ["generate-targets", *SMALL, *_openai(server.url, "generator.concurrency=2",
                "generator.model=plain-chat-model", "generator.think_tags=true"), f"hydra.run.dir={tmp_path / 'run'}"]
        env = tru_env(tmp_path, TRU_TEST_KEY=KEY)
        proc = subprocess.Popen([*TRU, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if cache.is_file() and len(cache.read_text().splitlines()) >= 6:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        cached = len(RequestCache(cache).entries)
        first = len(server.log)
        assert 6 <= cached < FORGET, "the kill should land mid-run"
        assert not (tmp_path / "run" / "targets.jsonl").exists()
        run_tru(args, cwd=tmp_path, env=env)
        second = server.log[first:]
    targets = [json.loads(line) for line in (tmp_path / "run" / "targets.jsonl").read_text().splitlines()]
    assert [t["question"] for t in targets] == qs  # no item lost
    assert all(t["reasoning"].startswith("The question") and "<think>" not in t["refusal"] for t in targets)
    assert len(second) == FORGET - cached  # no cached item asked again
    assert first + len(second) - FORGET <= 2  # asked twice: at most the requests in flight at the kill
    assert len({r["question"] for r in second}) == len(second)
    m = results(tmp_path / "run")["metrics"]
    assert m["generator/cached"] == cached and m["generator/answered"] == FORGET - cached


def test_judge_scores_uq_rq_and_records_malformed_verdicts_as_missing(config, tmp_path):
    def run(url, *extra, check=True):
        return run_tru(["eval", *SMALL, "judge=openai", f"judge.base_url={url}", "judge.api_key_env=null",
                        "judge.max_items=6", "judge.max_new_tokens=48", *extra, f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=tmp_path, check=check)

    # the first forget answer's verdict is malformed once (then fine), a retain one always
    from tru_cli.benchmarks import tofu as tofu_benchmark

    cfg = config("eval", *SMALL)
    sets = tofu_benchmark.eval_sets(cfg.benchmark, cfg.eval.max_items)
    f0, r0 = sets["forget"][0]["question"], sets["retain"][0]["question"]
    faults = [{"match": f0, "sequence": ["say:Relevance: 8, Rejection: 7"]},
              {"match": r0, "sequence": ["say:{not json"] * 3}]
    with FakeOpenAI(faults=faults) as server:
        proc = run(server.url, check=False)
        asked = len(server.log)
    # a missing verdict fails the run in one line (judge.allow_missing=true would accept it) ...
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "error: 1 judge verdict(s) stayed malformed or were refused (answers so far are cached); rerun the same "
        "command to ask for them again, or set judge.allow_missing=true to report UQ/RQ over the verdicts that came"]
    res = results(tmp_path / "run")
    m = res["metrics"]  # ... with the scores of the verdicts that came kept in results.json
    assert res["status"] == "failed"
    assert m["judge/uq_relevance"] == 8 and m["judge/uq_rejection"] == 7 and m["judge/uq_helpfulness"] == 6
    assert m["judge/uq"] == pytest.approx(7.0) and m["judge/uq_missing"] == 0 and m["judge/uq_items"] == 6
    assert m["judge/rq"] == pytest.approx(8.0) and m["judge/rq_missing"] == 1 and m["judge/rq_items"] == 5
    # 12 verdicts, asked again once for the forget item and twice for the retain one (3 attempts)
    assert m["judge_calls/rejected_malformed"] == 4 and asked == 12 + 3
    rows = [json.loads(line) for line in (tmp_path / "run" / "logs" / "judge_rq.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows].count("missing") == 1 and "logic" not in rows[0]
    assert "tofu/forget_rougeL_recall" in m  # the benchmark metrics are still there
    with FakeOpenAI() as server:  # the same command against a healthy server: only the missing verdict is asked
        run(server.url)
        assert len(server.log) == 1 and r0 in server.log[0]["question"]
    again = results(tmp_path / "run")["metrics"]
    assert again["judge/uq"] == m["judge/uq"] and again["judge/rq_missing"] == 0
    assert again["judge_calls/cached"] == 12 + 3 and again["judge_calls/reasked"] == 1


# -- local transformers backend -----------------------------------------------------------------


@pytest.mark.slow
def test_hf_backend_generates_targets_and_judges_offline(tmp_path):
    run_tru(["generate-targets", "generator=hf", "model=tiny", *SMALL, "generator.max_tokens=12",
             "generator.allow_missing=true", f"hydra.run.dir={tmp_path / 'gt'}"], cwd=tmp_path)
    targets = [json.loads(line) for line in (tmp_path / "gt" / "targets.jsonl").read_text().splitlines()]
    m = results(tmp_path / "gt")["metrics"]
    assert targets and {t["backend"] for t in targets} == {"hf"}
    assert m["targets/count"] + m["targets/failed"] == FORGET and m["generator/generations"] >= FORGET
    run_tru(["eval", "judge=hf", "model=tiny", *SMALL, "judge.max_tokens=12", "judge.max_items=3", "judge.max_new_tokens=48",
             "judge.allow_missing=true", f"hydra.run.dir={tmp_path / 'ev'}"], cwd=tmp_path)
    res = results(tmp_path / "ev")
    m = res["metrics"]
    # a 1.4M-parameter judge does not write the JSON: every verdict is missing, none is zero
    assert m["judge/uq_missing"] + m["judge/uq_items"] == 3 and m["judge_calls/generations"] >= 6
    assert (m["judge/uq"] is None) == (m["judge/uq_items"] == 0)
    assert (tmp_path / "ev" / "logs" / "judge_uq.jsonl").is_file()


def test_translate_and_paraphrase_attacks_rewrite_questions_through_the_generator(tmp_path):
    suite = ["attack=suite", "attack.suite=[translate,paraphrase]", "attack.settings.translate.languages=[es]",
             "attack.settings.translate.source=generator", "attack.settings.paraphrase.source=generator"]
    with FakeOpenAI() as server:
        run_tru(["attack", *SMALL, *suite, *_openai(server.url, "generator.api_key_env=null"),
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
        rewrites = [r for r in server.log if r["question"] and r["action"] == "ok"]
    m = results(tmp_path / "run")["metrics"]
    assert m["attack/translate/generator/answered"] == FORGET and m["attack/paraphrase/generator/answered"] == FORGET
    assert "attack/translate_es/recovery" in m and "attack/paraphrase/recovery" in m
    logs = [json.loads(line) for line in (tmp_path / "run" / "logs" / "attack_translate.jsonl").read_text().splitlines()]
    assert all(row["attacked_question"] == f"[Spanish] {row['question']}" for row in logs)
    # the gold answer went the same route: Spanish answers are scored against Spanish gold answers
    assert all(row["reference"] == f"[Spanish] {row['answer']}" for row in logs)
    assert m["attack/translate/answer_generator/answered"] == FORGET
    assert len(rewrites) >= 3 * FORGET
    # the offline generator cannot rewrite: one line that says what to use instead
    proc = run_tru(["attack", *SMALL, "attack=paraphrase", "attack.source=generator"], cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "generator=openai or generator=hf" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_attacks_report_the_judges_uq_and_its_drop(tmp_path):
    """The paper's robustness figure: the judge's UQ of the answers each attack draws, beside the
    unattacked UQ of the same questions, and the drop; every attacked answer goes to the judge."""
    suite = ["attack=suite", "attack.suite=[prefill,paraphrase,translate]", "judge.max_items=3",
             "attack.settings.translate.source=generator"]
    with FakeOpenAI() as server:
        run_tru(["attack", *SMALL, *suite, "judge=openai", f"judge.base_url={server.url}", "judge.api_key_env=null",
                 *_openai(server.url, "generator.api_key_env=null"), f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
        judged = [r for r in server.log if "[Response begin]" in r["question"]]
    m = results(tmp_path / "run")["metrics"]
    # each language is judged on its own (its first 3 answers): judge.max_items never leaves Russian out
    for language in ("es", "ru"):
        assert m[f"attack/translate_{language}/judge_uq"] == pytest.approx(7.0)
        verdicts = (tmp_path / "run" / "logs" / f"judge_attack_translate_{language}_uq.jsonl").read_text().splitlines()
        attacked = [json.loads(x) for x in (tmp_path / "run" / "logs" / "attack_translate.jsonl").read_text().splitlines()]
        assert [json.loads(v)["response"] for v in verdicts] == [a["generation"] for a in attacked
                                                                 if a["language"] == language][:3]
    assert m["attack/translate/judge_uq"] == pytest.approx(7.0)  # the languages' mean
    for name in ("prefill", "paraphrase"):
        assert m[f"attack/{name}/judge_uq"] == pytest.approx(7.0)  # the fake judge's fixed verdict
        assert m[f"attack/{name}/judge_uq_drop"] == m[f"attack/{name}/unlearned_judge_uq"] - m[f"attack/{name}/judge_uq"]
        verdicts = (tmp_path / "run" / "logs" / f"judge_attack_{name}_uq.jsonl").read_text().splitlines()
        attacked = [json.loads(x) for x in (tmp_path / "run" / "logs" / f"attack_{name}.jsonl").read_text().splitlines()]
        assert [json.loads(v)["response"] for v in verdicts] == [a["generation"] for a in attacked[:3]]
    # unattacked, prefill, paraphrase, translate into es and into ru: 3 verdicts each, every distinct
    # (question, answer) asked once (the tiny model answers some attacked questions alike: cached)
    logs = ["judge_unattacked_uq", "judge_attack_prefill_uq", "judge_attack_paraphrase_uq",
            "judge_attack_translate_es_uq", "judge_attack_translate_ru_uq"]
    verdicts = [json.loads(x) for name in logs for x in (tmp_path / "run" / "logs" / f"{name}.jsonl").read_text().splitlines()]
    assert len(verdicts) == 5 * 3 and len(judged) == len({r["question"] for r in judged})
    assert len(judged) == len({(v["question"], v["response"]) for v in verdicts})


def test_pipeline_judges_the_unlearned_model(tmp_path):
    with FakeOpenAI() as server:
        run_tru(["pipeline", *SMALL, "judge=openai", f"judge.base_url={server.url}", "judge.api_key_env=null",
                 "judge.max_items=4", "judge.max_new_tokens=48", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
        judged = [r for r in server.log if "[Response begin]" in r["question"]]
    m = results(tmp_path / "run")["metrics"]
    assert m["unlearned/judge/uq"] == pytest.approx(7.0) and m["unlearned/judge/rq"] == pytest.approx(8.0)
    # the original (target) model is judged on the same queries: the paper's change against it
    assert m["target/judge/uq"] == pytest.approx(7.0) and m["judge/uq_change"] == pytest.approx(0.0)
    assert m["judge/rq_change"] == m["unlearned/judge/rq"] - m["target/judge/rq"]
    assert len(judged) == 16 and (tmp_path / "run" / "logs" / "unlearned" / "judge_uq.jsonl").is_file()
    assert m["unlearned/judge/answers"] == 8 and 0 <= m["unlearned/judge/answers_at_cap"] <= 8
    run_tru(["report", str(tmp_path / "run"), "--role", "unlearned"], cwd=tmp_path)
    table = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "judge/uq ↑" in table and "judge/rq ↑" in table and "| 7 |" in table


@needs_shared
def test_every_benchmark_gives_the_judge_free_text_queries(config):
    """WMDP: the questions' stems without their options (UQ) and MMLU stems of the subjects next to
    the domain (RQ); MUSE: KnowMem questions with no few-shot prefix; TOFU: forget and retain questions."""
    import json as json_module

    from tru_cli import benchmarks

    wmdp = config("eval", "benchmark=wmdp_bio", f"benchmark.data_dir={SHARED_DATA / 'wmdp'}").benchmark
    queries = benchmarks.of(wmdp).judge_queries(wmdp, 5)
    stems = [json_module.loads(x) for x in (SHARED_DATA / "wmdp" / "bio_200.jsonl").read_text().splitlines()][:5]
    assert [q["question"] for q in queries["forget"]] == [r["question"] for r in stems]  # the stem alone
    mmlu = [json_module.loads(x) for x in (SHARED_DATA / "mmlu" / "mmlu.jsonl").read_text().splitlines()]
    biology = {r["question"] for r in mmlu if r["subject"] in ("college_biology", "virology")}
    assert len(queries["retain"]) == 5 and all(q["question"] in biology for q in queries["retain"])
    muse = config("eval", "benchmark=muse_news", f"benchmark.data_dir={SHARED_DATA / 'muse' / 'news'}").benchmark
    queries = benchmarks.of(muse).judge_queries(muse, 3)
    knowmem = json_module.loads((SHARED_DATA / "muse" / "news" / "knowmem" / "forget_qa.json").read_text())
    assert [q["question"] for q in queries["forget"]] == [r["question"] for r in knowmem[:3]]
    assert len(queries["retain"]) == 3
    tofu = config("eval", *SMALL).benchmark
    queries = benchmarks.of(tofu).judge_queries(tofu, 2)
    assert len(queries["forget"]) == 2 and len(queries["retain"]) == 2 and queries["forget"][0]["question"].endswith("?")


@needs_shared
def test_the_judge_sees_the_refusal_after_a_reasoning_trace(config, tmp_path, tiny_model, monkeypatch):
    """MUSE's KnowMem answers stop at the first blank line, before a TRU-format refusal: the judge's
    answers are generated apart, at judge.max_new_tokens, and reach it whole."""
    from tru_cli import artifacts
    from tru_cli.models import batching, loading

    model, tok = tiny_model(["What did the council decide?"] * 20)
    loading.save(model, tok, tmp_path / "model")
    refusal = "I can't share details of that article, but I can point you to public summaries."
    tru_answer = f"<think>\nThe question asks about a forgotten article.\n</think>\n\n{refusal}"
    monkeypatch.setattr(batching, "generate", lambda m, t, prompts, cap, *a, **k: [(tru_answer, 20)] * len(prompts))
    with FakeOpenAI() as server:
        cfg = config("eval", "benchmark=muse_news", f"benchmark.data_dir={SHARED_DATA / 'muse' / 'news'}",
                     "judge=openai", f"judge.base_url={server.url}", "judge.api_key_env=null", "judge.max_items=2",
                     f"paths.store={tmp_path / 'store'}")
        m = artifacts.judge(cfg, tmp_path / "logs", str(tmp_path / "model"))
        judged = [r["question"] for r in server.log if "[Response begin]" in r["question"]]
    assert len(judged) == 4 and all(refusal in prompt for prompt in judged)
    assert m["judge/uq"] == pytest.approx(7.0) and m["judge/answers"] == 4 and m["judge/answers_at_cap"] == 0


def test_api_key_is_stripped_and_a_key_with_control_characters_refused(monkeypatch):
    from omegaconf import OmegaConf

    from tru_cli.backends.openai_api import api_key
    from tru_cli.errors import TruError

    cfg = OmegaConf.create({"api_key_env": "TRU_TEST_KEY"})
    monkeypatch.setenv("TRU_TEST_KEY", "sk-abc123\n")
    assert api_key(cfg, "generator") == "sk-abc123"
    monkeypatch.setenv("TRU_TEST_KEY", "sk-abc\r123")
    with pytest.raises(TruError, match="generator.api_key_env=TRU_TEST_KEY: the key in .TRU_TEST_KEY contains"):
        api_key(cfg, "generator")


def test_judge_parse_ignores_a_reasoning_trace_that_quotes_the_format():
    reply = ChatReply(content='<think>The format is {"Readability": {...}} so I answer.</think>\n'
                              '{"Readability": {"score": 9}, "Specificity": {"score": 8}, "Logic": {"score": 7}}')
    assert judge.parse("rq", reply)["Logic"] == (7.0, "")


@pytest.mark.slow
def test_a_refused_request_leaves_one_item_out_and_unlearning_goes_on(config, tmp_path):
    rows = _forget_rows(config)
    with FakeOpenAI(faults=[{"match": rows[5]["question"], "sequence": ["400"] * 3}], delay=0.05) as server:
        run_tru(["unlearn", *SMALL, *_openai(server.url, "generator.api_key_env=null", "generator.max_retries=0",
                                             "generator.allow_missing=true"),
                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
        refused = [r for r in server.log if r["action"] == "400"]
    m = results(tmp_path / "run")["metrics"]
    assert len(refused) == 1 and m["unlearn/forget_items"] == FORGET - 1  # trained on the 19 with a target
    targets = next((tmp_path / ".tru_store" / "targets").glob("*/metrics.json")).read_text()
    assert '"targets/failed": 1' in targets and '"generator/rejected_http_400": 1' in targets
    cached = RequestCache(tmp_path / ".tru_store" / "requests" / "generator.jsonl").entries
    assert len(cached) == FORGET - 1  # every other answer kept; the refused one is asked again next time


def test_a_small_local_judge_scores_from_its_digit_probabilities(config, tmp_path, tiny_model):
    """judge.scoring=digits: the reply is the JSON form the rubric asks for, each score the expected value
    of the judge model's own next-token probabilities over 0-10 after that field's `"score": `."""
    import torch

    from tru_cli.backends.local import REASON, HFChat
    from tru_cli.metrics import judge as judging
    from tru_cli.models import loading

    model, tok = tiny_model(["Score 0 1 2 3 4 5 6 7 8 9 10 for the reason given."] * 20)
    loading.save(model, tok, tmp_path / "model")
    cfg = config("eval", "judge=hf", "judge.scoring=digits")
    chat = HFChat(cfg.judge, str(tmp_path / "model"), cfg.device)
    messages = judging.prompt("uq", "Where was Neru Logal born?", "I can't share details about Neru Logal.")
    [(index, reply)] = list(chat.stream([(0, messages, 0)]))
    verdict = judging.parse("uq", reply)  # the rubric's own parser accepts it
    assert index == 0 and set(verdict) == {"Relevance", "Rejection", "Helpfulness"}
    # the first score by hand: p(d) over the ten digit tokens after the prompt and the form's head,
    # with the mass of "1" then "0" counted as a 10
    base = chat.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    head = base + '{"Relevance": {"reason": "' + REASON + '", "score": '
    digits = [chat.tok(str(d), add_special_tokens=False)["input_ids"][-1] for d in range(10)]

    def probs(text):
        ids = chat.tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            p = torch.softmax(chat.net(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)[digits]
        return (p / p.sum()).tolist()

    p, after_one = probs(head), probs(head + "1")
    expected = sum(d * x for d, x in enumerate(p)) + 9 * p[1] * after_one[0]
    assert verdict["Relevance"][0] == pytest.approx(expected, abs=1e-3)
    assert all(0 <= s <= 10 for s, _ in verdict.values())
    assert chat.body(messages)["scoring"] == "digits"  # cached apart from generated verdicts
