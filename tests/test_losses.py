"""The unlearning losses on hand-computed values, and the direction of their updates."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from tru_cli.methods import losses


def test_token_nll_matches_hand_computation():
    # vocab 2; position t predicts label t+1; the prompt (label -100) is masked.
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 0, 1]])
    total, count = losses.token_nll(logits, labels)
    # predict label 0 from position 0 (uniform): log 2; label 1 from position 1 (p = 1/4): log 4
    assert count.tolist() == [2]
    assert total.item() == pytest.approx(math.log(2) + math.log(4), rel=1e-6)
    assert losses.mean_nll(logits, labels).item() == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_mean_nll_pools_tokens_across_rows():
    logits = torch.zeros(2, 3, 4)  # uniform over 4 tokens: every token costs log 4
    labels = torch.tensor([[-100, 1, 2], [-100, -100, 3]])  # 2 + 1 answer tokens
    assert losses.mean_nll(logits, labels).item() == pytest.approx(math.log(4))


def test_graddiff_and_tru_combine_terms():
    f, r, t = torch.tensor(2.0), torch.tensor(0.5), torch.tensor(1.5)
    assert losses.ga_loss(f).item() == -2.0
    assert losses.graddiff_loss(f, r, lambda_retain=1.0).item() == pytest.approx(-1.5)
    assert losses.graddiff_loss(f, r, lambda_retain=2.0).item() == pytest.approx(-1.0)
    # TRU: 1.5 + 0.1 * (-2 + 1 * 0.5) = 1.35
    assert losses.tru_loss(t, losses.graddiff_loss(f, r, 1.0), alpha=0.1).item() == pytest.approx(1.35)


def _method(**kw):
    base = {"name": "tru", "loss": "tru", "alpha": 0.1, "lambda_retain": 1.0, "ga_term": "graddiff",
            "use_targets": True}
    base.update(kw)
    return OmegaConf.create(base)


def test_method_loss_dispatch_and_needed_parts():
    parts = {"target": torch.tensor(1.5), "forget": torch.tensor(2.0), "retain": torch.tensor(0.5)}
    assert losses.method_loss(_method(), parts).item() == pytest.approx(1.35)
    assert losses.needed_parts(_method()) == ("target", "forget", "retain")
    graddiff = _method(name="graddiff", loss="graddiff", alpha=1.0, use_targets=False)
    assert losses.method_loss(graddiff, parts).item() == pytest.approx(-1.5)
    assert losses.needed_parts(graddiff) == ("forget", "retain")
    # ablation "without the target term" is a config, not a code path
    assert losses.method_loss(_method(use_targets=False), parts).item() == pytest.approx(-0.15)
    with pytest.raises(ValueError, match="ga_term"):
        losses.method_loss(_method(ga_term="nope"), parts)


def test_ga_step_raises_forget_nll_and_target_step_lowers_target_nll():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(8, 8), torch.nn.Linear(8, 8))
    ids = torch.tensor([[1, 2, 3, 4]])
    labels = torch.tensor([[-100, 2, 3, 4]])

    def nll():
        return losses.mean_nll(model(ids), labels)

    for loss_fn, sign in ((lambda: losses.ga_loss(nll()), +1), (lambda: nll(), -1)):
        before = nll().item()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        assert (nll().item() - before) * sign > 0
