"""MUSE metrics: hand-computed ROUGE, truncation, stop strings, Min-K%, AUC and PrivLeak, and the
three metrics end to end on a tiny random Llama over a few MUSE-News items."""

import json

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, needs_shared
from tru_cli.metrics import mia, muse

NEWS = SHARED_DATA / "muse" / "news"


class WordTok:
    """A whitespace tokenizer that, like Llama's, puts a BOS (id 0) in front when asked to."""

    bos_token_id, pad_token_id, eos_token_id = 0, None, 1

    def __init__(self):
        self.vocab = {"<s>": 0, "</s>": 1}

    def __call__(self, text, add_special_tokens=True, **_):
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return {"input_ids": ([0] if add_special_tokens else []) + ids}

    def decode(self, ids, skip_special_tokens=False, **_):
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids if not (skip_special_tokens and i in (0, 1)))


# --- ROUGE as MUSE scores it ---------------------------------------------------------------

def test_rouge_l_f1_by_hand():
    # LCS "the cat on the mat" = 5 of 6 tokens each way: P = R = F1 = 5/6
    assert muse.rouge("the cat sat on the mat", "the cat lay on the mat")["rougeL_f1"] == pytest.approx(5 / 6)
    # LCS 2, P = 2/2, R = 2/4: F1 = 2PR/(P+R) = 2/3, recall 1/2 (MUSE reports F1)
    s = muse.rouge("one two three four", "one three")
    assert s["rougeL_f1"] == pytest.approx(2 / 3) and s["rougeL_recall"] == pytest.approx(0.5)
    # rouge_score's tokenizer lowercases and drops punctuation
    assert muse.rouge("Hello, World!", "hello world")["rougeL_f1"] == pytest.approx(1.0)
    assert muse.rouge("some answer", "")["rougeL_f1"] == 0.0


def test_rouge_does_not_stem():
    # with a stemmer cats->cat, running->run would give LCS 3 (F1 0.75); MUSE: only "the", 1/4
    assert muse.rouge("the cats were running", "the cat was run")["rougeL_f1"] == pytest.approx(0.25)


# --- VerbMem reference, KnowMem prompt and stop strings -------------------------------------

def test_ground_truth_truncation_counts_the_bos_token():
    tok = WordTok()
    # MUSE: tokenizer(gt, add_special_tokens=True).input_ids[:, :N], so BOS + N-1 words survive
    assert muse.truncate_gt(tok, "w1 w2 w3 w4 w5", 3) == "w1 w2"
    assert muse.truncate_gt(tok, "w1 w2", 128) == "w1 w2"


def test_stop_strings_cut_in_muse_order():
    assert muse.cut_at_stop("Paris\n\nQuestion: and Rome?") == "Paris"
    assert muse.cut_at_stop("Paris\nQuestion: x") == "Paris"
    assert muse.cut_at_stop("Paris Question: x") == "Paris "
    assert muse.cut_at_stop("Paris\nAnswer: Rome") == "Paris\nAnswer: Rome"  # one newline is no stop
    assert muse.cut_at_stop("\n\nParis") == ""  # MUSE cuts before any stripping
    assert muse.cut_at_stop("1472") == "1472"


def test_knowmem_prompt_is_muses_few_shot_format():
    icl = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    assert muse.knowmem_prompt(icl, "Q3?") == (
        "Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\nQuestion: Q3?\nAnswer: ")
    assert muse.knowmem_prompt([], "Q?") == "Question: Q?\nAnswer: "


# --- Min-K%, AUC, PrivLeak ---------------------------------------------------------------------

def test_min_k_rounds_the_count_down():
    lp = np.array([-1.0, -5.0, -2.0, -4.0, -3.0, -0.5, -0.1])
    assert mia.min_k(lp, 0.4) == pytest.approx(4.5)  # int(7 * 0.4) = 2 lowest: -5, -4
    assert mia.min_k(lp[:5], 0.4) == pytest.approx(4.5)  # int(2.0) = 2
    assert mia.min_k(lp[:4], 0.4) == pytest.approx(5.0)  # int(1.6) = 1, not 2
    assert mia.min_k(lp, 1.0) == pytest.approx(-lp.mean())
    assert np.isnan(mia.min_k(lp[:2], 0.4))  # int(0.8) = 0: MUSE's mean of nothing


def test_auc_by_hand_count_with_ties():
    forget, holdout = [3.0, 1.0, 2.0], [2.0, 0.5]
    # pairs forget > holdout: 3>2, 3>0.5, 1>0.5, 2>0.5 = 4; one tie (2, 2) counts 1/2: 4.5 / 6
    assert mia.forget_holdout_auc(forget, holdout) == pytest.approx(4.5 / 6)
    assert mia.forget_holdout_auc([1.0, 1.0], [1.0]) == pytest.approx(0.5)
    assert mia.forget_holdout_auc([0.1, 0.2], [1.0, 2.0]) == 0.0  # forget far more likely
    with pytest.raises(ValueError):
        mia.forget_holdout_auc([float("nan")], [1.0])


def test_auc_equals_muses_sklearn_roc_call():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    forget, holdout = rng.integers(0, 6, 40).astype(float), rng.integers(0, 6, 30).astype(float)
    scores = np.concatenate([forget, holdout])
    y = np.array([0] * len(forget) + [1] * len(holdout))  # MUSE: forget "nonmember" 0, holdout 1
    fpr, tpr, _ = metrics.roc_curve(y, -scores)
    assert mia.forget_holdout_auc(forget, holdout) == pytest.approx(metrics.auc(fpr, tpr))


def test_privleak_formula_and_constants():
    assert mia.AUC_RETRAIN["news"] == pytest.approx(0.4772) and mia.AUC_RETRAIN["books"] == pytest.approx(0.5393)
    assert mia.privleak(0.6, 0.5) == pytest.approx(20.0)
    assert mia.privleak(0.0, mia.AUC_RETRAIN["news"]) == pytest.approx(-100.0)
    assert mia.privleak(0.4772, mia.AUC_RETRAIN["news"]) == pytest.approx(0.0, abs=1e-9)


def test_memorising_model_leaks_about_minus_100_and_a_retrained_one_about_0():
    rng = np.random.default_rng(1)

    def texts(mean, n=100, length=300):
        return [mia.min_k(rng.normal(mean, 1.0, length).clip(max=0), 0.4) for _ in range(n)]

    holdout = texts(-3.0)
    memorised = mia.forget_holdout_auc(texts(-0.5), holdout)  # forget log-likelihoods much higher
    assert mia.privleak(memorised, mia.AUC_RETRAIN["news"]) == pytest.approx(-100, abs=1)
    unseen = mia.forget_holdout_auc(texts(-3.0), holdout)  # forget text as foreign as the holdout
    assert unseen == pytest.approx(0.5, abs=0.1)
    assert mia.privleak(unseen, unseen) == 0.0  # a retrained model against its own AUC
    assert abs(mia.privleak(unseen, mia.AUC_RETRAIN["news"])) < 25


# --- Integration: a tiny random Llama on MUSE-News items -------------------------------------

@pytest.fixture(scope="module")
def tiny(tiny_model):
    texts = json.loads((NEWS / "privleak" / "holdout.json").read_text())[:20]
    model, tok = tiny_model(texts, vocab_size=600, max_length=4096)
    return model.eval(), tok


def _read(*parts):
    return json.loads(NEWS.joinpath(*parts).read_text())


@needs_shared
def test_token_logprobs_match_muses_one_text_computation(tiny):
    import torch

    model, tok = tiny
    texts = [t[:600] for t in _read("privleak", "forget.json")[:3]]
    batched = mia.token_logprobs(model, tok, texts, batch_size=3, max_length=48)
    for text, got in zip(texts, batched, strict=True):
        ids = torch.tensor([tok.encode(text)[:48]])  # MUSE: tokenizer.encode(text), whole text
        logp = torch.log_softmax(model(ids).logits, dim=-1)[0]
        want = [logp[i, t].item() for i, t in enumerate(ids[0, 1:])]
        assert len(got) == 47 and np.allclose(got, want, atol=1e-5)
    short = mia.token_logprobs(model, tok, ["", "a", "a b c"], batch_size=2, max_length=48)
    assert [len(x) for x in short[:2]] == [0, 0] and len(short[2]) > 0  # no token after the first: nothing scored


@needs_shared
def test_verbmem_knowmem_privleak_on_a_tiny_model(tiny):
    model, tok = tiny
    rows = [{"prompt": r["prompt"][-400:], "gt": r["gt"]} for r in _read("verbmem", "forget.json")[:3]]
    score, logs = muse.verbmem(model, tok, rows, max_new_tokens=12, batch_size=2)
    assert 0.0 <= score <= 100.0 and len(logs) == 3
    assert score == pytest.approx(100 * np.mean([r["rougeL_f1"] for r in logs]))
    for row, log in zip(rows, logs, strict=True):
        assert log["gt"] == muse.truncate_gt(tok, row["gt"], 12) and row["gt"].startswith(log["gt"][:20])
        assert len(tok(log["generation"], add_special_tokens=False)["input_ids"]) <= 12 + 2

    qa, icl = _read("knowmem", "forget_qa.json")[:3], _read("knowmem", "forget_qa_icl.json")[:3]
    score, logs = muse.knowmem(model, tok, qa, icl, max_new_tokens=8, batch_size=2)
    assert 0.0 <= score <= 100.0 and [r["gt"] for r in logs] == [r["answer"] for r in qa]
    for log in logs:
        assert log["generation"] == muse.cut_at_stop(log["raw_generation"])
        assert not any(s in log["generation"] for s in muse.STOP_STRINGS)

    forget, holdout = _read("privleak", "forget.json")[:4], _read("privleak", "holdout.json")[:4]
    value, parts = muse.privleak_scores(model, tok, forget, holdout, mia.AUC_RETRAIN["news"],
                                        batch_size=4, max_length=64)
    assert 0.0 <= parts["auc"] <= 1.0 and len(parts["forget_min_k"]) == len(parts["holdout_min_k"]) == 4
    assert value == pytest.approx(mia.privleak(parts["auc"], mia.AUC_RETRAIN["news"]))
    assert parts["auc"] == mia.forget_holdout_auc(parts["forget_min_k"], parts["holdout_min_k"])


def _muse_one_at_a_time(model, tok, prompt, max_new_tokens):
    """MUSE's own per-item generation (metrics/verbmem.py, knowmem.py): unpadded, decoded whole."""
    ids = tok(prompt, return_tensors="pt", add_special_tokens=True).input_ids
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    return tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True, clean_up_tokenization_spaces=True)[0]


@needs_shared
def test_batched_scores_equal_muses_item_by_item_loop(tiny):
    from rouge_score import rouge_scorer

    model, tok = tiny
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rows = [{"prompt": r["prompt"][-300:], "gt": r["gt"]} for r in _read("verbmem", "forget.json")[3:6]]
    score, logs = muse.verbmem(model, tok, rows, max_new_tokens=10, batch_size=3)
    want = []
    for r, log in zip(rows, logs, strict=True):
        gen = _muse_one_at_a_time(model, tok, r["prompt"], 10)
        gt_ids = tok(r["gt"], return_tensors="pt", add_special_tokens=True).input_ids[:, :10]
        gt = tok.batch_decode(gt_ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)[0]
        assert (log["generation"], log["gt"]) == (gen, gt)
        want.append(scorer.score(gt, gen)["rougeL"].fmeasure)
    assert score == pytest.approx(100 * np.mean(want))

    qa, icl = _read("knowmem", "forget_qa.json")[3:6], _read("knowmem", "forget_qa_icl.json")
    _, logs = muse.knowmem(model, tok, qa, icl, max_new_tokens=6, batch_size=3)
    for r, log in zip(qa, logs, strict=True):
        assert log["raw_generation"] == _muse_one_at_a_time(model, tok, muse.knowmem_prompt(icl, r["question"]), 6)


@needs_shared
def test_knowmem_cuts_stops_before_any_whitespace_strip(tiny):
    import torch

    _, tok = tiny
    canned = tok("\n\nParis", add_special_tokens=False)["input_ids"]

    class Canned(torch.nn.Module):
        """Always continues with "\\n\\nParis" (MUSE scores that as the empty answer)."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, **_):
            new = torch.tensor([canned] * len(input_ids))
            return torch.cat([input_ids, new], dim=1)

    score, logs = muse.knowmem(Canned(), tok, [{"question": "Capital of France?", "answer": "Paris"}], [])
    assert logs[0]["raw_generation"] == "\n\nParis" and logs[0]["generation"] == "" and score == 0.0
