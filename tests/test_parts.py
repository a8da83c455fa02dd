"""Small units: the tiny model and tokenizer, prompt masking, the offline backend, redaction."""

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
