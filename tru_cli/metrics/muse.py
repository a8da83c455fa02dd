"""MUSE's metrics, as MUSE's own code (swj0419/muse_bench: eval.py, metrics/{verbmem,knowmem,
privleak,logger}.py) defines them. Scale: VerbMem and KnowMem are mean ROUGE-L F1 x 100 (0-100,
as MUSE's eval.py reports them; per-item ROUGE values in the logs stay 0-1), PrivLeak is in
percent (see tru_cli.metrics.mia).

- VerbMem (forget): greedy continuation of the raw prompt (no chat template), at most 128 new
  tokens; the reference is the ground truth cut to its first 128 tokens of
  `tokenizer(gt, add_special_tokens=True)` (so a BOS counts as one of them, as in MUSE) and
  decoded; score = ROUGE-L F1 (rouge_score, NO stemming) of generation vs reference, mean over
  items. Lower on the forget set = less verbatim memory; the retrained model's value is the
  target (MUSE News, anchors.md: about 20 retrain vs 58 target).
- KnowMem (forget or retain QA): few-shot prompt "Question: {q}\\nAnswer: {a}\\n\\n" for every
  *_icl row, then "Question: {q}\\nAnswer: "; greedy, at most 32 new tokens; the generation is
  cut at the first "\\n\\n", then "\\nQuestion", then "Question:"; score = ROUGE-L F1 (not
  recall, unlike TOFU) against the full answer, no stemming, mean. Forget: lower = less
  knowledge; retain: higher = utility kept.
- PrivLeak: Min-40% scores of the privleak forget and holdout texts -> MUSE's forget/holdout
  AUC -> (AUC - AUC_retrain) / AUC_retrain * 100; 0 is best, near -100 under-unlearned,
  large positive over-unlearned.

Prompts and references are tokenised with the tokenizer's own special tokens (MUSE's
`add_special_tokens=True`); generations and references are decoded without special tokens and
with `clean_up_tokenization_spaces=True`, as MUSE decodes them. Unlike MUSE (one item at a time)
generation is batched with left padding, which can only change greedy ties through rounding.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tru_cli import collector
from tru_cli.metrics import mia
from tru_cli.metrics.tofu import prefetch_rouge
from tru_cli.models import batching

STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")  # MUSE knowmem.py, in this order
_SENTINEL = "\x00"


@lru_cache(maxsize=2)
def _scorer(unicode: bool = False):
    with collector.paused():  # deferred: it loads nltk (about a second)
        from rouge_score import rouge_scorer

    from tru_cli.metrics.tofu import UnicodeWords

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False,  # MUSE: no stemming
                                    tokenizer=UnicodeWords(stem=False) if unicode else None)


def rouge(gt: str, generation: str, unicode: bool = False) -> dict[str, float]:
    """ROUGE-1/ROUGE-L F1 and recall (0-1) of one generation against its reference, as MUSE logs them
    (`unicode`: over words of any script, for text in other languages; MUSE's is a-z and 0-9)."""
    s = _scorer(unicode).score(gt, generation)
    return {"rougeL_f1": s["rougeL"].fmeasure, "rougeL_recall": s["rougeL"].recall,
            "rouge1_f1": s["rouge1"].fmeasure, "rouge1_recall": s["rouge1"].recall}


def truncate_gt(tok, gt: str, max_tokens: int) -> str:
    """The ground truth cut to its first `max_tokens` tokens (special tokens counted), decoded."""
    ids = tok(gt, add_special_tokens=True)["input_ids"][:max_tokens]
    return tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)


def cut_at_stop(text: str, stops: tuple[str, ...] = STOP_STRINGS) -> str:
    """The text before each stop string in turn (MUSE's get_prefix_before_words_occur)."""
    for stop in stops:
        text = text.split(stop)[0]
    return text


def knowmem_prompt(icl_rows: list[dict], question: str) -> str:
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in icl_rows)
    return shots + f"Question: {question}\nAnswer: "


class _MuseDecoding:
    """The tokenizer as batching.generate sees it, decoding as MUSE does.

    batching.generate strips its decoded text, but MUSE cuts the stop strings from the
    unstripped generation ("\\n\\nParis" scores as ""), so the text is fenced by a non-whitespace
    sentinel on each side and unfenced afterwards. Everything else is the real tokenizer; a
    missing pad token falls back to EOS, as `generate(pad_token_id=None)` does in MUSE.
    """

    def __init__(self, tok):
        self._tok = tok
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def decode(self, ids, **_):
        text = self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=True)
        return _SENTINEL + text + _SENTINEL


def _greedy(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of text prompts, which VerbMem and KnowMem then score with ROUGE."""
    prefetch_rouge()
    return continuations(model, tok, [tok(p, add_special_tokens=True)["input_ids"] for p in prompts],
                         max_new_tokens, batch_size)


def continuations(model, tok, ids: list[list[int]], max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy continuations of raw prompt ids, decoded as MUSE decodes them (unstripped)."""
    out = batching.generate(model, _MuseDecoding(tok), ids, max_new_tokens, batch_size, do_sample=False)
    return [text[1:-1] if text[:1] == text[-1:] == _SENTINEL and len(text) > 1 else text
            for text, _ in out]


def _mean_f1(logs: list[dict]) -> float:
    return float(np.mean([r["rougeL_f1"] for r in logs]) * 100) if logs else float("nan")


def verbmem(model, tok, rows: list[dict], max_new_tokens: int = 128,
            batch_size: int = 8) -> tuple[float, list[dict]]:
    """MUSE VerbMem (0-100) of rows {prompt, gt}, and one log dict per row."""
    generations = _greedy(model, tok, [r["prompt"] for r in rows], max_new_tokens, batch_size)
    logs = []
    for r, gen in zip(rows, generations, strict=True):
        gt = truncate_gt(tok, r["gt"], max_new_tokens)
        logs.append({"prompt": r["prompt"], "gt": gt, "generation": gen, **rouge(gt, gen)})
    return _mean_f1(logs), logs


def knowmem(model, tok, rows: list[dict], icl_rows: list[dict], max_new_tokens: int = 32,
            batch_size: int = 8) -> tuple[float, list[dict]]:
    """MUSE KnowMem (0-100) of rows {question, answer} with few-shot rows {question, answer}."""
    prompts = [knowmem_prompt(icl_rows, r["question"]) for r in rows]
    generations = _greedy(model, tok, prompts, max_new_tokens, batch_size)
    logs = []
    for r, raw in zip(rows, generations, strict=True):
        gen = cut_at_stop(raw)
        logs.append({"question": r["question"], "gt": r["answer"], "generation": gen,
                     "raw_generation": raw, **rouge(r["answer"], gen)})
    return _mean_f1(logs), logs


def privleak_scores(model, tok, forget_texts: list[str], holdout_texts: list[str], auc_retrain: float,
                    batch_size: int = 8, max_length: int | None = None,
                    k: float = mia.MIN_K) -> tuple[float, dict]:
    """MUSE PrivLeak (%) and its parts: AUC, AUC_retrain and per-text Min-K% scores.

    `auc_retrain`: the retrained model's AUC, e.g. mia.AUC_RETRAIN["news"] for MUSE's own models.
    `max_length`: token cap per text; MUSE has none, so the default is the model's context.
    """
    if max_length is None:
        max_length = int(getattr(model.config, "max_position_embeddings", 4096))
    forget = [mia.min_k(lp, k) for lp in mia.token_logprobs(model, tok, forget_texts, batch_size, max_length)]
    holdout = [mia.min_k(lp, k) for lp in mia.token_logprobs(model, tok, holdout_texts, batch_size, max_length)]
    auc = mia.forget_holdout_auc(forget, holdout)
    value = mia.privleak(auc, auc_retrain)
    return value, {"privleak": value, "auc": auc, "auc_retrain": auc_retrain,
                   "forget_min_k": forget, "holdout_min_k": holdout}
