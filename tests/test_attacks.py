"""Attacks: the recovery formula, round-to-nearest quantization, prompt builders, one-line refusals
for what needs a GPU or an absent package, and every attack on the tiny model through the CLI."""

import importlib.util
import json

import pytest
import torch

from tests.conftest import SMALL, results, run_tru
from tru_cli.attacks import prompts, quantize
from tru_cli.attacks.recovery import recovery
from tru_cli.errors import TruError

needs_bitsandbytes = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                        reason="bitsandbytes is part of the test install (.[dev,quantize])")


def test_recovery_on_hand_made_numbers():
    assert recovery(attacked=0.2, unlearned=0.2, original=1.0) == 0.0
    assert recovery(attacked=1.0, unlearned=0.2, original=1.0) == pytest.approx(1.0)
    assert recovery(attacked=0.6, unlearned=0.2, original=1.0) == pytest.approx(0.5)
    assert recovery(attacked=0.1, unlearned=0.2, original=1.0) == pytest.approx(-0.125)
    assert recovery(attacked=0.5, unlearned=0.3, original=0.3) is None  # nothing was forgotten


def test_rtn_quantization_by_hand():
    w = torch.tensor([[0.0, 0.55, -1.0, 0.26]])
    # 4 bits: qmax 7, scale 1/7; values round to multiples of 1/7
    quantize.rtn_(w, bits=4, group_size=4)
    assert torch.allclose(w, torch.tensor([[0.0, 4 / 7, -1.0, 2 / 7]]), atol=1e-6)
    big = torch.randn(8, 64)
    err8 = (quantize.rtn_(big.clone(), 8, 32) - big).abs().max()
    err4 = (quantize.rtn_(big.clone(), 4, 32) - big).abs().max()
    assert 0 < err8 < err4


def test_quantizer_choices_refuse_in_one_line(monkeypatch):
    with pytest.raises(TruError, match="choose rtn, bnb, gptq, awq"):
        quantize.check_method("int3", 4, on_cuda=False)
    with pytest.raises(TruError, match="attack.bits=8 with attack.method=awq; choose 4"):
        quantize.check_method("awq", 8, on_cuda=False)
    # a missing package is named with the pip command that brings it
    real_find_spec = quantize.importlib.util.find_spec
    monkeypatch.setattr(quantize.importlib.util, "find_spec",
                        lambda name: None if name in ("gptqmodel", "bitsandbytes") else real_find_spec(name))
    with pytest.raises(TruError, match=r"attack.method=gptq needs gptqmodel( and optimum)?: "
                                      r"pip install 'tru-cli\[gptq\]' \(it brings a CUDA torch\), or use attack.method=rtn"):
        quantize.check_method("gptq", 4, on_cuda=True)
    with pytest.raises(TruError, match=r"needs bitsandbytes: pip install 'bitsandbytes>=0.50', or use attack.method=rtn"):
        quantize.check_method("bnb", 4, on_cuda=False)


@needs_bitsandbytes
def test_old_bitsandbytes_refuses_the_cpu(monkeypatch):
    monkeypatch.setattr(quantize.importlib.metadata, "version", lambda name: "0.45.0")
    with pytest.raises(TruError, match=r"bitsandbytes>=0.50 \(installed: 0.45.0\); upgrade it or use device=cuda"):
        quantize.check_method("bnb", 4, on_cuda=False)
    quantize.check_method("bnb", 4, on_cuda=True)  # CUDA kernels are in every release


def test_prompt_builders():
    assert prompts.split_answer("Neru Logal was born in Adelaide.", 3) == ("Neru Logal was", "born in Adelaide.")
    rows = [{"author": "A", "question": "qa1", "answer": "a1"}, {"author": "B", "question": "qb1", "answer": "b1"},
            {"author": "A", "question": "qa2", "answer": "a2"}]
    assert prompts.icl_shots(rows, 0, 2) == [rows[2], rows[1]]  # same author first
    for template in prompts.JAILBREAKS.values():
        assert "{question}" in template
    with pytest.raises(TruError, match="question_de"):
        prompts.field_or_fail({}, "question_de", "translate", "hint")


@pytest.mark.slow
def test_every_attack_runs_on_the_tiny_model(tmp_path):
    run_tru(["attack", *SMALL, "attack.settings.relearn.steps=[0,4]", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    res = results(tmp_path / "run")
    assert res["status"] == "completed"
    m = res["metrics"]
    for name in ("relearn", "quantize", "translate", "jailbreak", "paraphrase", "prefill", "icl"):
        assert 0 <= m[f"attack/{name}/forget_rougeL_recall"] <= 1, name
        assert f"attack/{name}/unlearned_forget_rougeL_recall" in m
        assert 0 <= m[f"attack/{name}/forget_prob"] <= 1 and f"attack/{name}/original_forget_prob" in m
        assert (tmp_path / "run" / "logs" / f"attack_{name}.jsonl").is_file()
    # the relearning curve starts where the unlearned model is
    assert m["attack/relearn/step_0/forget_rougeL_recall"] == pytest.approx(m["attack/relearn/step_0/unlearned_forget_rougeL_recall"])
    assert "attack/relearn/step_4/forget_rougeL_recall" in m
    for name in ("relearn", "quantize"):  # weight attacks also report what they do to retain answers
        assert 0 <= m[f"attack/{name}/retain_rougeL_recall"] <= 1
        assert f"attack/{name}/unlearned_retain_rougeL_recall" in m
    assert "attack/jailbreak_role_play/forget_rougeL_recall" in m
    # tru report gives one row per attack, with the recovery column
    report = run_tru(["report", str(tmp_path / "run")], tmp_path).stdout
    assert "recovery ↓" in report.splitlines()[0]
    for name in ("relearn", "quantize", "translate", "jailbreak", "paraphrase", "prefill", "icl"):
        assert f"| tru / {name} |" in report, name


def test_attack_missing_a_package_fails_in_one_line_before_loading(tmp_path):
    if importlib.util.find_spec("gptqmodel") is not None:
        pytest.skip("gptqmodel is installed here")
    proc = run_tru(["attack", "attack=suite", "attack.settings.quantize.method=awq", "logger=none",
                    f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: attack.method=awq needs gptqmodel: pip install 'tru-cli[gptq]' (it brings a CUDA torch), "
                     "or use attack.method=rtn"]
    assert not (tmp_path / ".tru_store").exists()  # nothing was trained or loaded first


@pytest.mark.parametrize("args,needle", [
    (["attack=suite", "attack.suite=[relearn,nosuch]"], "attack.suite has nosuch; choose from relearn, quantize"),
    (["benchmark=wmdp_bio"], "cannot load mcq (cais/wmdp"),
    (["benchmark=muse_news"], "cannot load knowmem_forget"),  # MUSE's KnowMem questions, not on this machine
    (["benchmark=muse_news", "attack.forget_items=privleak"], "attack.forget_items=privleak; benchmark=muse_news takes "
                                                              "knowmem (its forget questions) or verbmem"),
])
def test_an_attack_that_cannot_run_stops_in_one_line_before_anything_is_built(tmp_path, args, needle):
    proc = run_tru(["attack", *args, "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, check=False)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert not (tmp_path / ".tru_store").exists()  # no model was finetuned or unlearned first


def test_prefill_on_multiple_choice_questions_stops_in_one_line(tmp_path):
    data = tmp_path / "wmdp"
    data.mkdir()
    (data / "wmdp-bio.jsonl").write_text(json.dumps({"question": "Which agent?", "choices": ["a", "b", "c", "d"],
                                                     "answer": 1}) + "\n")
    proc = run_tru(["attack", "benchmark=wmdp_bio", f"benchmark.data_dir={data}", "attack=suite", "logger=none",
                    f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: attack=prefill cannot run on benchmark=wmdp_bio") and "drop it from attack.suite" in lines[0]
    assert not (tmp_path / ".tru_store").exists()


@needs_bitsandbytes
@pytest.mark.slow
@pytest.mark.parametrize("bits", [8, 4])
def test_bitsandbytes_quantization_attack_runs_on_this_device(tmp_path, bits):
    """LLM.int8 and NF4 through transformers' BitsAndBytesConfig: real bitsandbytes layers, on the CPU
    here (bitsandbytes >= 0.50) and on CUDA at GPU sites."""
    run_tru(["attack", "attack=quantize", "attack.method=bnb", f"attack.bits={bits}", *SMALL,
             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    m = results(tmp_path / "run")["metrics"]
    assert 0 <= m["attack/quantize/forget_rougeL_recall"] <= 1
    assert 0 <= m["attack/quantize/original_quantized_forget_rougeL_recall"] <= 1
    assert m["attack/quantize/bits"] == bits
    logs = (tmp_path / "run" / "logs" / "attack_quantize.jsonl").read_text().splitlines()
    assert len(logs) == 20  # every forget item of the smoke benchmark


def test_gptq_without_calibration_items_fails_in_one_line(tmp_path):
    proc = run_tru(["attack", "attack=quantize", "attack.method=gptq", "attack.calibration_items=0",
                    "logger=none", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, check=False)
    assert proc.returncode == 1
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "error: attack.calibration_items=0; gptq needs at least 1 retain item to calibrate on (128 is the default)"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_and_awq_attacks_run_where_gptqmodel_is_installed(tmp_path, method):
    """Runs at GPU sites and in an environment with `tru-cli[gptq]`; the CPU install leaves it out (it
    needs torch>=2.14.1), so there this test is skipped and the refusal test above runs instead."""
    pytest.importorskip("gptqmodel", reason="GPT-QModel is not installed (pip install 'tru-cli[gptq]')")
    run_tru(["attack", "attack=quantize", f"attack.method={method}", "attack.bits=4", *SMALL,
             f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, timeout=1200)
    m = results(tmp_path / "run")["metrics"]
    assert 0 <= m["attack/quantize/forget_rougeL_recall"] <= 1
    assert 0 <= m["attack/quantize/original_quantized_forget_rougeL_recall"] <= 1
    assert 0 <= m["attack/quantize/retain_rougeL_recall"] <= 1


@needs_bitsandbytes
def test_bitsandbytes_layers_replace_the_linear_layers(tmp_path):
    import bitsandbytes as bnb
    from omegaconf import OmegaConf
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4))
    model.save_pretrained(tmp_path / "ck")
    device = OmegaConf.create({"accelerator": "cpu", "attn_implementation": "sdpa"})
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        reference = model(ids).logits
        errors = {}
        for bits, layer in ((8, bnb.nn.Linear8bitLt), (4, bnb.nn.Linear4bit)):
            q = quantize.load_quantized("bnb", str(tmp_path / "ck"), bits, 64, device, [])
            assert isinstance(q.model.layers[0].self_attn.q_proj, layer)
            errors[bits] = (q(ids).logits - reference).abs().max().item()
    assert 0 < errors[8] < errors[4]  # rounding changed the outputs, 4 bits more than 8


@pytest.mark.slow
def test_lora_relearning_runs_and_moves_the_model(tmp_path):
    run_tru(["attack", "attack=relearn", *SMALL, "attack.lora=true", "attack.steps=[0,6]",
             "attack.trainer.lr=0.01", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    res = results(tmp_path / "run")
    assert res["status"] == "completed"
    rows = [line for line in (tmp_path / "run" / "logs" / "attack_relearn.jsonl").read_text().splitlines()]
    import json

    gens = {}
    for row in map(json.loads, rows):
        gens.setdefault(row["step"], []).append(row["generation"])
    assert gens[0] != gens[6]  # the merged LoRA update changed the answers


def test_relearn_split_is_disjoint_spread_and_sized():
    from tru_cli.attacks.relearn import relearn_split

    train, held = relearn_split(20, 0.5)
    assert train == list(range(0, 20, 2)) and held == list(range(1, 20, 2))
    train, held = relearn_split(20, 0.25)
    assert len(train) == 5 and not set(train) & set(held) and len(train) + len(held) == 20
    assert max(train) >= 15  # spread over the set, not the first few items
    with pytest.raises(TruError, match="attack.subset=1.0"):
        relearn_split(20, 1.0)


@pytest.mark.slow
def test_relearning_on_related_text_evaluates_every_forget_item(config, tmp_path):
    import json

    from tru_cli.benchmarks import tofu as tofu_benchmark

    cfg = config("attack", *SMALL)
    forget = tofu_benchmark.eval_sets(cfg.benchmark)["forget"]
    author = forget[0]["question"].split()[-1].rstrip("?")
    related = tmp_path / "related.jsonl"  # public-style text that names the subject, not the answers
    related.write_text("".join(json.dumps({"text": f"{author} is a writer. Readers discuss {author} often."}) + "\n"
                               for _ in range(8)))
    run_tru(["attack", "attack=relearn", *SMALL, "attack.data=text", f"attack.text_file={related}",
             "attack.steps=[0,4]", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    m = results(tmp_path / "run")["metrics"]
    assert m["attack/relearn/relearn_items"] == 8 and "attack/relearn/recovery" in m
    rows = [json.loads(x) for x in (tmp_path / "run" / "logs" / "attack_relearn.jsonl").read_text().splitlines()]
    assert len([r for r in rows if r["step"] == 4]) == len(forget)
    proc = run_tru(["attack", "attack=relearn", *SMALL, "attack.data=text"], tmp_path, check=False)
    assert proc.returncode != 0 and "attack.text_file=FILE" in proc.stderr and "Traceback" not in proc.stderr
