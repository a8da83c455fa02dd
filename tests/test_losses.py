"""The unlearning losses on hand-computed values, and the direction of their updates."""

import math

import pytest
import torch

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


def test_npo_matches_its_closed_form():
    nll, ref = torch.tensor([3.0, 1.0]), torch.tensor([2.0, 2.0])
    beta = 0.1
    # (2/beta) * log(1 + (P/P_ref)^beta), with P/P_ref = exp(ref - nll)
    expected = sum((2 / beta) * math.log(1 + math.exp(beta * (r - n))) for n, r in ((3.0, 2.0), (1.0, 2.0))) / 2
    assert losses.npo_loss(nll, ref, beta).item() == pytest.approx(expected, rel=1e-6)
    # at the reference point NPO is (2/beta) log 2, and raising the NLL lowers it
    assert losses.npo_loss(ref, ref, beta).item() == pytest.approx(2 / beta * math.log(2), rel=1e-6)
    assert losses.npo_loss(ref + 5, ref, beta) < losses.npo_loss(ref, ref, beta)


def test_simnpo_dpo_by_hand():
    avg = torch.tensor([1.0])
    assert losses.simnpo_loss(avg, beta=2.0, delta=0.5).item() == pytest.approx(
        -(2 / 2.0) * math.log(1 / (1 + math.exp(-2.0 * 0.5))), rel=1e-6)
    # DPO: win log-ratio = ref - nll = 1, lose log-ratio = -1  ->  -(2/b) log sigmoid(b * 2)
    got = losses.dpo_loss(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0]), torch.tensor([2.0]), beta=0.5)
    assert got.item() == pytest.approx(-(2 / 0.5) * math.log(1 / (1 + math.exp(-1.0))), rel=1e-6)


def test_wga_weights_tokens_by_their_probability():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[-100, 0, 1]])
    # tokens: p=1/2 (CE log 2) and p=1/4 (CE log 4); beta=1 weights them by p
    expected = -(0.5 * math.log(2) + 0.25 * math.log(4)) / 2
    assert losses.wga_loss(logits, labels, beta=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert losses.wga_loss(logits, labels, beta=0.0).item() == pytest.approx(-(math.log(2) + math.log(4)) / 2)


def test_kl_is_zero_for_equal_models_and_positive_otherwise():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5)
    labels = torch.tensor([[-100, 1, 2, 3], [-100, -100, 4, 0]])
    assert losses.kl_loss(logits, logits.clone(), labels).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.kl_loss(logits, torch.randn(2, 4, 5), labels).item() > 0


def test_rmu_loss_by_hand():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])
    control = torch.tensor([1.0, 3.0])
    mask = torch.tensor([[1, 0]])
    assert losses.rmu_loss(hidden, control, mask).item() == pytest.approx((0.0 + 4.0) / 2)
    # pooled per sequence, then over sequences (WMDP, OpenUnlearning): a 1-token sequence at distance 8
    # and a 3-token one at distance 2 give (8 + 2) / 2 = 5, not the token mean (8 + 3 * 2) / 4 = 3.5
    hidden = torch.zeros(2, 3, 1)
    control = torch.zeros(1)
    hidden[0, 0, 0] = 8.0 ** 0.5
    hidden[1, :, 0] = 2.0 ** 0.5
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    assert losses.rmu_loss(hidden, control, mask).item() == pytest.approx(5.0)
