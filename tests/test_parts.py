"""Small units: the tiny model and tokenizer, prompt masking, the offline backend, redaction."""

import json
import sys

import pytest
from omegaconf import OmegaConf

from tru_cli.backends.offline import OfflineBackend
from tru_cli.backends.prompts import system_prompt
from tru_cli.data import synthetic
from tru_cli.data.encoding import IGNORE, PromptFormatter
from tru_cli.targets.generate import requests_for
from tru_cli.targets.leaks import leaks
from tru_cli.tracking import RunRecorder


def test_tiny_model_saves_and_loads_like_a_hub_checkpoint(config, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tru_cli.models import loading, tiny

    cfg = config("finetune")
    model, tok = tiny.build_tiny(cfg.model, ["Where was Neru Logal born? In Lisbon."] * 50)
    assert model.config.model_type == "llama" and model.config.hidden_size == 128
    loading.save(model, tok, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    tok2, model2 = AutoTokenizer.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path)
    assert tok2.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                    add_generation_prompt=True).endswith("<|assistant|>")
    assert tok2.convert_tokens_to_ids("<think>") != tok2.unk_token_id
    assert sum(p.numel() for p in model2.parameters()) == sum(p.numel() for p in model.parameters())


def test_prompt_tokens_are_masked_and_answer_ends_with_eos(config):
    from tru_cli.models import tiny

    cfg = config("finetune")
    _, tok = tiny.build_tiny(cfg.model, ["question answer"] * 20)
    enc = PromptFormatter(tok, cfg.model).encode("question?", "answer")
    n_prompt = enc["labels"].count(IGNORE)
    assert n_prompt > 0 and enc["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert enc["input_ids"][-1] == tok.eos_token_id
    literal = PromptFormatter(tok, OmegaConf.merge(cfg.model, {"prompt_format": "literal"}))
    assert tok.decode(literal.prompt_ids("Q?"), skip_special_tokens=True) == "Question: Q?\nAnswer:"


def test_a_long_question_is_cut_before_the_answer(config):
    """A passage as the user message (MUSE, WMDP) longer than model.max_length loses its end; the
    answer (a TRU target, its refusal last) is kept whole. Only an answer that cannot fit alone is
    cut, and the encoding says by how much."""
    from omegaconf import OmegaConf

    from tru_cli.models import tiny

    cfg = config("unlearn")
    passage = " ".join(f"Word{i} of a long news passage about the city council." for i in range(60))
    target = "The request concerns a protected passage, so I will not reproduce it. I can summarise public facts."
    _, tok = tiny.build_tiny(cfg.model, [passage, target] * 10)
    fmt = PromptFormatter(tok, OmegaConf.merge(cfg.model, {"max_length": 96}))
    reply = fmt.answer_ids(target)
    assert len(fmt.prompt_ids(passage)) + len(reply) > 96  # the whole passage would not fit
    enc = fmt.encode(passage, target)
    assert len(enc["input_ids"]) <= 96 and "dropped" not in enc
    assert [t for t in enc["labels"] if t != IGNORE] == reply  # every target token supervised, EOS included
    n_prompt = len(enc["input_ids"]) - len(reply)
    prompt = tok.decode(enc["input_ids"][:n_prompt], skip_special_tokens=True)
    assert "Word0 of a long news passage" in prompt and "Word59" not in prompt
    empty = fmt.prompt_ids("")  # the chat template around the question stays whole: its first and last token
    assert enc["input_ids"][0] == empty[0] and enc["input_ids"][n_prompt - 1] == empty[-1]
    short = PromptFormatter(tok, OmegaConf.merge(cfg.model, {"max_length": len(reply) - 5}))
    cut = short.encode(passage, target)
    assert cut["dropped"] >= 5 and len(cut["input_ids"]) == len(reply) - 5


# A small Llama-3-style chat template: the system turn carries the date line, as Llama-3.x's does.
LLAMA3_STYLE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                "{% if m['role'] == 'system' %}Today Date: {{ date_string | default('none') }}\n\n{% endif %}"
                "{{ m['content'] }}<|eot_id|>{% endfor %}"
                "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def test_tofu_prompts_match_the_published_checkpoints_templates(config):
    """OpenUnlearning trained its TOFU checkpoints with a system prompt and the date "10 Apr 2025"
    (Llama-3.x) and with the literal "[INST] question [/INST]answer" form (Llama-2-chat)."""
    from tru_cli.models import tiny

    _, tok = tiny.build_tiny(config("unlearn").model, ["Who wrote The Silent Orchard? Basil Mahfouz."] * 20)
    tok.chat_template = LLAMA3_STYLE
    llama3 = PromptFormatter(tok, config("unlearn", "model=llama3-8b").model)
    assert llama3.prompt_text("Who wrote The Silent Orchard?") == (
        f"{tok.bos_token}<|start_header_id|>system<|end_header_id|>\n\nToday Date: 10 Apr 2025\n\n"
        "You are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Who wrote The Silent Orchard?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    llama2 = PromptFormatter(tok, config("unlearn", "model=llama2-7b-chat").model)
    assert llama2.prompt_text("Who wrote The Silent Orchard?") == "[INST] Who wrote The Silent Orchard? [/INST]"
    enc = llama2.encode("Who wrote The Silent Orchard?", "Basil Mahfouz.")
    assert enc["input_ids"][0] == tok.bos_token_id and enc["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == \
        "[INST] Who wrote The Silent Orchard? [/INST]Basil Mahfouz."
    # the default literal template keeps its space before the answer; plain chat has no system turn
    phi = PromptFormatter(tok, config("unlearn", "model=phi-1.5").model)
    assert tok.decode(phi.encode("Q?", "A.")["input_ids"], skip_special_tokens=True) == "Question: Q?\nAnswer: A."
    assert "system" not in PromptFormatter(tok, config("unlearn").model).prompt_text("Q?")


def test_offline_targets_are_deterministic_explained_and_leak_free(config):
    cfg = config("generate-targets")
    rows = synthetic.generate()["forget10"]
    backend = OfflineBackend()
    first, second = backend.generate(requests_for(cfg, rows)), backend.generate(requests_for(cfg, rows))
    assert [r.refusal for r in first] == [r.refusal for r in second]
    bare = OfflineBackend(criteria=False).generate(requests_for(cfg, rows))
    for row, res, plain in zip(rows, first, bare, strict=True):
        assert row["author"] in res.reasoning and row["author"] in res.refusal
        assert not leaks(row["answer"], res.reasoning + res.refusal)
        # with the criteria the explained refusal is followed by a constructive redirect
        assert res.refusal.startswith(plain.refusal) and len(res.refusal) > len(plain.refusal) + 40
    assert len({r.refusal for r in first}) > 10


def test_generation_prompt_holds_task_and_criteria():
    text = system_prompt("the authors of the forget set", criteria=True)
    assert "the authors of the forget set" in text and "Criteria" in text and "refuse" in text
    assert "Criteria" not in system_prompt("x", criteria=False)


def test_secrets_never_reach_config_or_results(config, tmp_path):
    cfg = config("eval", "logger=none", "+generator.api_key=sk-secret-123",
                           "+generator.api_key_env=OPENAI_API_KEY")
    with RunRecorder("eval", cfg, tmp_path) as recorder:
        recorder.add_metrics({"tofu/forget_prob": 0.5})
    text = (tmp_path / "config.yaml").read_text() + (tmp_path / "results.json").read_text()
    assert "sk-secret-123" not in text and "OPENAI_API_KEY" in text


class SlowWandb:
    """Stands in for the wandb module: an init that takes a while, as wandb's service start does."""

    def __init__(self, fail: bool = False):
        self.fail, self.inits, self.logged, self.finished = fail, 0, [], []

    def init(self, **kwargs):
        import time

        time.sleep(0.3)
        self.inits += 1
        if self.fail:
            raise RuntimeError("no network")
        return self

    def log(self, values, step=None):
        self.logged.append((step, values))

    @property
    def summary(self):
        return {}

    def finish(self, exit_code=0):
        self.finished.append(exit_code)


def test_wandb_starts_in_the_background_and_keeps_every_row_logged_meanwhile(config, tmp_path, monkeypatch):
    fake = SlowWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = config("unlearn", "logger=wandb", "logger.mode=offline")
    with RunRecorder("unlearn", cfg, tmp_path) as recorder:
        recorder.log_step({"step": 1, "loss": 3.0}, "unlearn")  # before wandb is even started
        recorder.start_tracking()
        assert fake.inits == 0  # the work goes on while wandb starts
        recorder.log_step({"step": 2, "loss": 2.5, "note": "text"}, "unlearn")
    assert fake.logged == [(1, {"unlearn/loss": 3.0}), (2, {"unlearn/loss": 2.5})] and fake.finished == [0]

    failing = SlowWandb(fail=True)  # a failed start: the run goes on, and is recorded once
    monkeypatch.setitem(sys.modules, "wandb", failing)
    with pytest.raises(ValueError), RunRecorder("unlearn", cfg, tmp_path / "failed") as recorder:
        raise ValueError("failed before the work began")
    assert failing.inits == 1 and json.loads((tmp_path / "failed" / "results.json").read_text())["status"] == "failed"


def test_wandb_mode_is_offline_without_credentials_and_env_wins(monkeypatch, tmp_path):
    from tru_cli.tracking import resolve_wandb_mode

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"  # WANDB_MODE reaches here through the config


def test_cuda_device_ids_become_cuda_visible_devices(config, monkeypatch):
    import os

    from tru_cli.runner import _select_devices

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _select_devices(config("unlearn", "device=cuda", "device.device_ids=[2,3]"))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"
    cfg = config("unlearn", "device=cuda")
    assert cfg.device.dtype == "bfloat16" and cfg.device.mixed_precision == "bf16"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    _select_devices(config("unlearn", "device=cpu"))
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
