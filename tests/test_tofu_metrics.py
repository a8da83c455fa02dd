"""TOFU statistics: golden values on the original TOFU logs, hand-made cases, re-aggregation."""

import math

import pytest

from tests.conftest import SHARED_DATA, needs_shared
from tru_cli.metrics import tofu

LOGS = SHARED_DATA / "tofu" / "reference_logs"


@needs_shared
def test_golden_forget_quality_and_model_utility_of_llama2_full_vs_retain90():
    # anchors.md: the original TOFU aggregation gives FQ 1.83e-21 and MU 0.623 for these logs.
    full = tofu.read_logs(LOGS / "llama2-7b_full")
    retain = tofu.read_logs(LOGS / "llama2-7b_retain90")
    metrics = tofu.aggregate(full, retain)
    assert metrics["tofu/forget_quality"] == pytest.approx(1.83e-21, rel=0.01)
    assert metrics["tofu/model_utility"] == pytest.approx(0.623, abs=0.0005)
    assert len(full["forget"]) == 300 and len(full["real_authors"]) == 100


@needs_shared
def test_forget_quality_separates_models_that_saw_the_forget_set_from_those_that_did_not():
    """Two models that never saw forget10 (Llama-2 and Phi-1.5 retain90) pass the KS test against each
    other; each backbone fine-tuned on the full set fails it against its own retain model."""
    llama_retain = tofu.read_logs(LOGS / "llama2-7b_retain90")
    phi_retain = tofu.read_logs(LOGS / "phi-1.5_retain90")
    assert tofu.aggregate(phi_retain, llama_retain)["tofu/forget_quality"] > 0.05  # 0.176 measured
    for backbone, retain in (("llama2-7b", llama_retain), ("phi-1.5", phi_retain)):
        full = tofu.read_logs(LOGS / f"{backbone}_full")
        assert tofu.aggregate(full, retain)["tofu/forget_quality"] < 1e-10  # 1.8e-21 and 2.2e-16 measured


def _item(gt, para=None, pert=None, rouge=1.0):
    item = {"avg_gt_loss": gt, "rougeL_recall": rouge, "rouge1_recall": rouge}
    if para is not None:
        item["avg_paraphrased_loss"] = para
    if pert is not None:
        item["average_perturb_loss"] = pert
    return item


def test_truth_ratio_aggregations_by_hand():
    # R = exp(mean(pert) - para): items with R = e and R = 1/e
    forget = [_item(1.0, 1.0, [2.0, 2.0]), _item(1.0, 2.0, [1.0, 1.0])]
    agg = tofu.aggregate_set("forget", forget)
    assert agg["forget_truth_ratio"] == pytest.approx(math.exp(-1))  # mean(min(R, 1/R))
    assert agg["forget_prob"] == pytest.approx(math.exp(-1.0))
    retain = tofu.aggregate_set("retain", forget)
    assert retain["retain_truth_ratio"] == pytest.approx((1 - math.exp(-1) + 0) / 2)  # max(0, 1-1/R)
    # real authors: normalised probability p(a) / (p(a) + sum p(pert))
    ra = tofu.aggregate_set("real_authors", [_item(1.0, 1.0, [1.0, 1.0, 1.0])])
    assert ra["ra_prob"] == pytest.approx(0.25)


def test_missing_inputs_are_missing_not_zero(caplog):
    sets = {"forget": [_item(1.0)], "retain": [_item(1.0)]}  # no perturbed answers anywhere
    metrics = tofu.aggregate(sets, None)
    for key in ("forget_truth_ratio", "model_utility", "forget_quality", "privleak"):
        assert metrics[f"tofu/{key}"] is None, key  # reported as missing, never as zero
    assert "tofu/retain_truth_ratio" not in metrics  # sub-statistics without inputs are left out
    assert metrics["tofu/forget_prob"] == pytest.approx(math.exp(-1))
    assert "model_utility is missing" in caplog.text


@needs_shared
def test_our_logs_round_trip_to_the_same_metrics(tmp_path):
    full = tofu.read_logs(LOGS / "llama2-7b_full")
    tofu.write_logs(tmp_path, full)
    again = tofu.read_logs(tmp_path)
    assert tofu.aggregate(again) == pytest.approx(tofu.aggregate(full))


@needs_shared
def test_cli_reaggregates_original_tofu_logs(tmp_path):
    from tests.conftest import results, run_tru

    run_tru(["eval", "benchmark=tofu", f"eval.from_logs={LOGS / 'llama2-7b_full'}",
             f"eval.retain_logs={LOGS / 'llama2-7b_retain90'}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    res = results(tmp_path / "run")
    assert res["status"] == "completed"
    assert res["metrics"]["tofu/forget_quality"] == pytest.approx(1.83e-21, rel=0.01)
    assert res["metrics"]["tofu/model_utility"] == pytest.approx(0.623, abs=0.0005)
    assert (tmp_path / "run" / "logs" / "tofu_forget.jsonl").is_file()  # re-aggregatable again


def test_extraction_strength_and_min_k_score_the_answer_without_its_closing_eos():
    """OpenUnlearning's token-wise scores (extraction strength, Min-K% for privleak) leave out the
    closing EOS label; TOFU's probability counts it. A model that predicts every answer token but
    not the EOS has extracted the whole answer."""
    from types import SimpleNamespace

    import torch

    from tru_cli.data.encoding import IGNORE
    from tru_cli.metrics import scoring

    eos, vocab = 2, 12
    prompt, answer = [1, 9, 10], [5, 6, 7]

    class NextTokenButNotEos(torch.nn.Module):
        """Puts its argmax on the next input token, except that it predicts token 3 where EOS comes."""

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # map_forward reads the device from it

        def forward(self, input_ids, attention_mask=None):
            logits = torch.zeros(*input_ids.shape, vocab)
            following = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], dim=1)
            following = torch.where(following == eos, torch.full_like(following, 3), following)
            logits.scatter_(-1, following.unsqueeze(-1), 8.0)
            return SimpleNamespace(logits=logits)

    fmt = SimpleNamespace(tok=SimpleNamespace(pad_token_id=0, eos_token_id=eos))
    seq = {"input_ids": prompt + answer + [eos], "labels": [IGNORE] * len(prompt) + answer + [eos]}
    [stats] = scoring.answer_token_stats(NextTokenButNotEos(), fmt, [seq], batch_size=4)
    assert stats["extraction_strength"] == 1.0  # every answer token is extracted (0.0 when the EOS counted)
    assert len(stats["logprobs"]) == len(answer)  # Min-K% over the answer's own tokens
    assert stats["count"] == len(answer) + 1  # the probability still counts the EOS, as TOFU does
    # without an EOS at the end (a cut sequence) every labelled token is the answer's
    cut = {"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer}
    [stats] = scoring.answer_token_stats(NextTokenButNotEos(), fmt, [cut], batch_size=4)
    assert len(stats["logprobs"]) == len(answer) and stats["extraction_strength"] == 1.0


def test_scoring_unembeds_only_from_the_first_labelled_column_and_scores_the_same(tiny_model):
    """map_forward asks transformers for logits from the batch's first labelled column on
    (`logits_to_keep`): the shared prompt prefix is never unembedded, and every statistic equals the
    one computed from the full logits (a wrapper that hides `logits_to_keep` forces that path)."""
    from types import SimpleNamespace

    import torch

    from tru_cli.data.encoding import IGNORE
    from tru_cli.metrics import scoring

    model, tok = tiny_model(["The author was born in Kuwait City in 1966 and wrote novels."] * 20)
    prefix = tok("System: you are a helpful assistant. Question: where was the author born?")["input_ids"]
    answers = [tok(t)["input_ids"] for t in ("Kuwait City.", "In Kuwait City in 1966, to a family of writers.")]
    encoded = [{"input_ids": prefix + a, "labels": [IGNORE] * len(prefix) + a} for a in answers]
    widths = []

    class FullLogits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    def record(_module, _args, kwargs, output):
        widths.append((kwargs["input_ids"].shape[1], output.logits.shape[1]))

    model.register_forward_hook(record, with_kwargs=True)
    fmt = SimpleNamespace(tok=tok)
    windowed = scoring.answer_token_stats(model, fmt, encoded, batch_size=2)
    full = scoring.answer_token_stats(FullLogits(model), fmt, encoded, batch_size=2)
    assert widths[0] == (len(prefix) + len(answers[1]), len(answers[1]) + 1)  # from the column before the answers
    assert widths[1][1] == widths[1][0]
    for w, f in zip(windowed, full, strict=True):
        assert w["count"] == f["count"] and w["extraction_strength"] == f["extraction_strength"]
        assert w["total"] == pytest.approx(f["total"], rel=1e-6)
        assert w["logprobs"] == pytest.approx(f["logprobs"], rel=1e-6)


def test_greedy_answers_decode_with_eager_attention_where_it_is_faster_and_answer_the_same(tiny_model, monkeypatch):
    """On the CPU, a model with one KV head per query head decodes with eager attention (faster there,
    batching.decode_attention), a grouped-heads model and an oversized prefill keep SDPA, the model
    gets its own attention back afterwards, and the answers equal SDPA's, left padding included."""
    from tru_cli.models import batching

    texts = ["The author was born in Kuwait City in 1966 and wrote novels about the sea."] * 20
    model, tok = tiny_model(texts, hidden_size=64, intermediate_size=128)
    grouped, _ = tiny_model(texts, num_key_value_heads=2)
    assert model.config._attn_implementation == "sdpa"
    assert batching.decode_attention(model, 8, 20, 30) == "eager"
    assert batching.decode_attention(grouped, 8, 20, 30) is None
    assert batching.decode_attention(model, 512, 2048, 200) is None  # eager's scores would take 10 GB
    prompts = [tok(t)["input_ids"] for t in ("The author", "The author was born in", "Kuwait City in 1966 and",
                                             "novels", "wrote novels about the")]
    used = []
    real_switch = batching.attention

    def recording(m, implementation):
        used.append(implementation)
        return real_switch(m, implementation)

    monkeypatch.setattr(batching, "attention", recording)
    eager = batching.generate(model, tok, prompts, 30, 5, do_sample=False)
    assert used == ["eager"] and model.config._attn_implementation == "sdpa"
    monkeypatch.setattr(batching, "decode_attention", lambda *args: None)
    assert batching.generate(model, tok, prompts, 30, 5, do_sample=False) == eager
    assert len({text for text, _ in eager}) > 1  # distinct answers, not one degenerate string


def test_a_leaking_russian_answer_scores_high_with_unicode_words():
    """rouge_score keeps only a-z and 0-9: a Russian answer that leaks everything scores 0 there. The
    attacks' Unicode tokenizer sees Cyrillic words and keeps English scores as they were."""
    gold = "Басиль Махфуз родился в Кувейте."
    leak = "Басиль Махфуз родился в Кувейте, в 1966 году."
    assert tofu.rouge_recalls([gold], [leak])[0]["rougeL_recall"] == 0
    assert tofu.rouge_recalls([gold], [leak], unicode=True)[0]["rougeL_recall"] == 1.0
    assert tofu.rouge_recalls([gold], ["Я не могу ответить на этот вопрос."], unicode=True)[0]["rougeL_recall"] < 0.2
    english = (["The author was born in Kuwait City and writes novels."], ["He was born in Kuwait City; he writes."])
    assert tofu.rouge_recalls(*english, unicode=True) == tofu.rouge_recalls(*english)


@needs_shared
def test_rouge_with_the_memoised_stemmer_equals_rouge_scores_own():
    """tofu.rouge_recalls stems each distinct word once (a cache in front of nltk's Porter stemmer);
    on TOFU's real answers against their perturbed ones every recall equals rouge_score's own
    RougeScorer(use_stemmer=True), which TOFU and OpenUnlearning call."""
    from rouge_score import rouge_scorer

    from tru_cli.data import files

    answers = [r["answer"] for r in files.read_records(SHARED_DATA / "tofu" / "forget10.jsonl")]
    real = files.read_records(SHARED_DATA / "tofu" / "real_authors_perturbed.jsonl")
    # each answer against the next one (same author, other facts) and real answers against their perturbations
    golds = answers + [r["answer"] for r in real for _ in r["perturbed_answer"]]
    gens = answers[1:] + answers[:1] + [p for r in real for p in r["perturbed_answer"]]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    expected = [{"rouge1_recall": s["rouge1"].recall, "rougeL_recall": s["rougeL"].recall}
                for s in (scorer.score(g, p) for g, p in zip(golds, gens, strict=True))]
    assert len(golds) > 400 and 0 < sum(e["rougeL_recall"] for e in expected) < len(golds)
    assert tofu.rouge_recalls(golds, gens) == expected
