"""Every method composes, needs what it says it needs, and trains a few steps on the tiny model;
NPO's precomputed reference statistics equal a held reference model's; RMU hooks the right layer."""

import copy
import math

import pytest
import torch

from tru_cli import artifacts, benchmarks
from tru_cli.config import group_options
from tru_cli.data import sources
from tru_cli.methods import objectives
from tru_cli.methods.unlearn import build_rows, with_reference_nll

METHODS = group_options("method")


def test_all_baselines_and_ablations_exist():
    assert {"ga", "graddiff", "kl", "npo", "simnpo", "idkpo", "idkdpo", "wga", "rmu", "tru", "tru_no_ga",
            "tru_no_target", "tru_no_reasoning", "tru_no_criteria"} <= set(METHODS)


def test_parts_and_references_per_method(config):
    def m(name, *ov):
        return config("unlearn", f"method={name}", *ov).method

    assert objectives.needed_parts(m("tru")) == ("target", "forget", "retain")
    assert objectives.needed_parts(m("tru_no_ga")) == ("target",)
    assert objectives.needed_parts(m("tru_no_target")) == ("forget", "retain")
    assert objectives.needed_parts(m("ga")) == ("forget",)
    assert objectives.needed_parts(m("idkpo")) == ("idk", "retain")
    assert objectives.needed_parts(m("idkdpo")) == ("forget", "idk", "retain")
    assert objectives.reference_stats(m("npo")) == ("forget",)
    assert objectives.reference_stats(m("idkdpo")) == ("forget", "idk")
    assert objectives.reference_stats(m("tru", "method.ga_term=npo")) == ("forget",)
    assert not objectives.needs_reference_model(m("npo")) and not objectives.needs_reference_model(m("wga"))
    assert objectives.needs_reference_model(m("kl")) and objectives.needs_reference_model(m("rmu"))
    assert config("unlearn", "method=tru_no_reasoning").method.target_format == "{refusal}"


@pytest.fixture(scope="module")
def tiny_setup(config, tmp_path_factory):
    """A random tiny model saved like a checkpoint, and targets for the smoke benchmark."""
    from tru_cli.models import loading, tiny

    root = tmp_path_factory.mktemp("methods")
    cfg = config("unlearn", "experiments=smoke", "logger=none")
    model, tok = tiny.build_tiny(cfg.model, benchmarks.of(cfg.benchmark).all_text(cfg.benchmark))
    loading.save(model, tok, root / "model")
    artifacts.build_targets(cfg, root / "targets.jsonl")
    return root


@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_a_few_steps(config, name, tiny_setup, tmp_path):
    cfg = config("unlearn", "experiments=smoke", "logger=none", f"method={name}",
                              "model.recipe.unlearn_epochs=1", "trainer.unlearn.batch_size=4",
                              "trainer.unlearn.per_device_batch_size=4")
    metrics = artifacts.build_unlearned(cfg, str(tiny_setup / "model"), str(tiny_setup / "targets.jsonl"), tmp_path)
    # every step counted, not only the logged ones (logging_steps=5)
    assert metrics["unlearn/steps"] == math.ceil(metrics["unlearn/forget_items"] / 4)
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert metrics["unlearn/reference_model_held"] == float(objectives.needs_reference_model(cfg.method))
    assert all(v == v for v in metrics.values())  # no NaN in the curve summary


@pytest.mark.parametrize("ga_term", ["ga", "npo", "wga"])
def test_tru_ga_term_plug_ins_train(config, ga_term, tiny_setup, tmp_path):
    cfg = config("unlearn", "experiments=smoke", "logger=none", f"method.ga_term={ga_term}",
                              "model.recipe.unlearn_epochs=1")
    metrics = artifacts.build_unlearned(cfg, str(tiny_setup / "model"), str(tiny_setup / "targets.jsonl"), tmp_path)
    assert "unlearn/target_nll_last" in metrics and "unlearn/forget_nll_last" in metrics
    assert ("unlearn/retain_nll_last" in metrics) == (ga_term != "ga")


def test_npo_reference_statistics_equal_a_held_reference_model(config, tiny_setup):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tru_cli.data.encoding import PromptFormatter, pad
    from tru_cli.methods.losses import token_nll

    cfg = config("unlearn", "experiments=smoke", "method=npo")
    model = AutoModelForCausalLM.from_pretrained(tiny_setup / "model")
    tok = AutoTokenizer.from_pretrained(tiny_setup / "model")
    fmt = PromptFormatter(tok, cfg.model)
    rows = [fmt.encode(r["question"], r["answer"]) for r in sources.load_split(cfg.benchmark, "forget10")]
    held = copy.deepcopy(model).eval()
    with_reference_nll(model, rows, tok.pad_token_id, batch_size=7)  # precomputed once, sorted batches
    batch = pad(rows, tok.pad_token_id)  # the held model sees the training batch as collated
    with torch.no_grad():
        logits = held(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = token_nll(logits, batch["labels"])[0]
    assert torch.allclose(torch.tensor([r["ref_nll"] for r in rows]), expected, atol=1e-5, rtol=1e-5)


def test_rmu_hooks_the_configured_layer(config, tiny_setup):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_setup / "model")
    for layer in (0, 2):
        method = config("unlearn", "method=rmu", f"method.layer={layer}").method
        objective = objectives.Objective(method, model, copy.deepcopy(model))
        ids = torch.tensor([[1, 5, 6, 7]])
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        # hidden_states[i + 1] is the output of decoder layer i
        assert torch.allclose(objective.capture.output, out.hidden_states[layer + 1])
        assert objective.capture.layer is model.model.layers[layer]
        objective.capture.remove()
        objective.ref_capture.remove()
        assert objective.control.norm().item() == pytest.approx(float(method.steering_coeff), rel=1e-5)


def test_rmu_layer_out_of_range_is_named(config):
    from tru_cli.models import tiny

    cfg = config("unlearn", "method=rmu", "method.layer=9")
    model, _ = tiny.build_tiny(cfg.model, ["a b c"] * 20)
    with pytest.raises(ValueError, match="method.layer=9"):
        objectives.Objective(cfg.method, model)


def test_npo_with_a_held_reference_trains_like_the_precomputed_one(config, tiny_setup, tmp_path):
    runs = {}
    for reference in ("precompute", "model"):
        cfg = config("unlearn", "experiments=smoke", "logger=none", "method=npo",
                                  f"method.reference={reference}", "model.recipe.unlearn_epochs=1")
        runs[reference] = artifacts.build_unlearned(cfg, str(tiny_setup / "model"), None, tmp_path / reference)
    assert runs["precompute"]["unlearn/reference_model_held"] == 0.0
    assert runs["model"]["unlearn/reference_model_held"] == 1.0
    assert runs["model"]["unlearn/loss_first"] == pytest.approx(runs["precompute"]["unlearn/loss_first"], rel=1e-4)


def test_idk_answer_is_redrawn_each_epoch_with_its_reference_statistics(config, tiny_setup):
    """OpenUnlearning draws the IDK answer anew each time an item is read; tru draws one per (item,
    epoch), encoded and scored by the reference before training (IdkDPO's precomputed statistics)."""
    from tru_cli.data.encoding import PromptFormatter
    from tru_cli.methods import unlearn
    from tru_cli.methods.trainer import ForgetRetainDataset
    from tru_cli.models import loading

    cfg = config("unlearn", "experiments=smoke", "logger=none", "method=idkdpo", "model.recipe.unlearn_epochs=3")
    model, tok = loading.load(str(tiny_setup / "model"), cfg.device)
    fmt = PromptFormatter(tok, cfg.model)
    forget = benchmarks.of(cfg.benchmark).forget_rows(cfg.benchmark)
    rows = unlearn.build_rows(cfg, fmt, forget, None, ("forget", "idk", "retain"))
    assert all(len(row["idk_by_epoch"]) == 3 for row in rows)
    unlearn.with_reference_nll(model, [seq for row in rows for seq in row["idk_by_epoch"]], tok.pad_token_id, 8)
    data = ForgetRetainDataset(rows, [], seed=0)
    by_epoch = []
    for epoch in range(3):
        data.epoch = epoch
        items = [data[i] for i in range(len(data))]
        assert all("idk_by_epoch" not in item and "ref_nll" in item["idk"] for item in items)
        assert [item["idk"]["input_ids"] for item in items] == [data[i]["idk"]["input_ids"] for i in range(len(data))]
        by_epoch.append([tok.decode(item["idk"]["input_ids"]) for item in items])
    assert by_epoch[0] != by_epoch[1] != by_epoch[2]  # redrawn, not one fixed answer per item


def _normalised_sgd_step(model, lr: float = 0.05) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad / (p.grad.norm() + 1e-12)


@pytest.mark.parametrize("name,part,direction", [
    ("ga", "forget", +1), ("graddiff", "forget", +1), ("kl", "forget", +1), ("npo", "forget", +1),
    ("simnpo", "forget", +1), ("wga", "forget", +1), ("idkdpo", "forget", +1), ("idkpo", "idk", -1),
    ("tru", "target", -1), ("tru_no_target", "forget", +1)])
def test_one_step_moves_the_forget_statistics_the_right_way(config, name, part, direction, tiny_setup):
    """One SGD step on a toy batch: GA-style terms raise the forget answers' NLL, SFT-style terms
    (IDK answers, TRU targets) lower the NLL of what they train toward. The retain term is switched
    off (lambda_retain=0) so that the step shows the forget term's own direction."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tru_cli.data.encoding import PromptFormatter, UnlearnCollator
    from tru_cli.methods.losses import mean_nll

    cfg = config("unlearn", "experiments=smoke", f"method={name}", "method.lambda_retain=0")
    model = AutoModelForCausalLM.from_pretrained(tiny_setup / "model")
    tok = AutoTokenizer.from_pretrained(tiny_setup / "model")
    fmt = PromptFormatter(tok, cfg.model)
    forget = sources.load_split(cfg.benchmark, "forget10")[:4]
    parts = objectives.needed_parts(cfg.method)
    rows = build_rows(cfg, fmt, forget, str(tiny_setup / "targets.jsonl"), parts)
    for key in objectives.reference_stats(cfg.method):
        with_reference_nll(model, [r[key] for r in rows], tok.pad_token_id, 4)
    retain = benchmarks.of(cfg.benchmark).retain_rows(cfg.benchmark)[:4]
    for row, r in zip(rows, retain, strict=True):
        row["retain"] = fmt.encode(r["question"], r["answer"])
    batch = UnlearnCollator(tok.pad_token_id)(rows)
    ref = copy.deepcopy(model).eval() if objectives.needs_reference_model(cfg.method) else None
    objective = objectives.Objective(cfg.method, model, ref)

    def nll():
        with torch.no_grad():
            b = batch[part]
            return mean_nll(model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits,
                            b["labels"]).item()

    before = nll()
    loss, _ = objective(model, batch)
    loss.backward()
    _normalised_sgd_step(model)
    assert (nll() - before) * direction > 0


def test_rmu_step_pulls_forget_activations_toward_the_control_vector(config, tiny_setup):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tru_cli.data.encoding import PromptFormatter, pad
    from tru_cli.methods import losses

    cfg = config("unlearn", "experiments=smoke", "method=rmu", "method.lambda_retain=0")
    model = AutoModelForCausalLM.from_pretrained(tiny_setup / "model")
    tok = AutoTokenizer.from_pretrained(tiny_setup / "model")
    fmt = PromptFormatter(tok, cfg.model)
    forget = pad([fmt.encode(r["question"], r["answer"])
                  for r in sources.load_split(cfg.benchmark, "forget10")[:4]], tok.pad_token_id)
    objective = objectives.Objective(cfg.method, model, copy.deepcopy(model))
    inputs = {"forget": forget, "retain": forget}

    def distance():
        with torch.no_grad():
            model(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"])
            return losses.rmu_loss(objective.capture.output, objective.control, forget["labels"] != -100).item()

    before = distance()
    loss, _ = objective(model, inputs)
    loss.backward()
    _normalised_sgd_step(model)
    assert distance() < before
