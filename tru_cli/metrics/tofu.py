"""TOFU's metrics, as the original TOFU code (locuslab/tofu, aggregate_eval_stat.py) defines them.

Per item (teacher-forced, answer tokens only): avg_gt_loss = mean token NLL of the answer;
avg_paraphrased_loss = the same for the paraphrased answer (for real-author and world-fact sets,
which have no paraphrase, the answer itself); average_perturb_loss = one value per perturbed
answer; rougeL_recall / rouge1_recall of the greedy answer against the answer (rouge_score, stemmed).

Aggregates (direction in brackets):
- prob: forget/retain: mean exp(-avg_gt_loss); real authors/world facts: mean of
  p(answer) / (p(answer) + sum p(perturbed)) [forget: lower after unlearning; others: higher].
- truth ratio: R = exp(mean(perturb_loss) - paraphrased_loss) = p_para / p_pert (geometric mean
  over perturbations); forget: mean(min(R, 1/R)) [closer to the retain model is better];
  retain/real/world: mean(max(0, 1 - 1/R)) [higher is better].
- forget_quality: p-value of scipy's two-sample KS test between the per-item forget R of the model
  and of the retain model [higher = indistinguishable from never having learned the forget set].
- model_utility: scipy harmonic mean of the nine retain/real/world prob, ROUGE-L and truth-ratio
  statistics [higher is better].
"""

from __future__ import annotations

import functools
import logging
import math
import re

import numpy as np

from tru_cli import collector, prefetch
from tru_cli.metrics import mia
from tru_cli.metrics.tofu_logs import SETS, read_logs, write_logs  # noqa: F401 (where callers find them)

log = logging.getLogger("tru")
SHORT = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
UTILITY_KEYS = ["retain_prob", "retain_rougeL_recall", "retain_truth_ratio",
                "ra_prob", "ra_rougeL_recall", "ra_truth_ratio",
                "wf_prob", "wf_rougeL_recall", "wf_truth_ratio"]


class MemoStemmer:
    """Porter stemming (nltk, as rouge_score uses it) with each word's stem computed once: a pure
    function of the word, so the scores are unchanged (tests/test_tofu_metrics.py). Stemming was most
    of ROUGE's time on 200-token generations, which repeat their words: 1,017 TOFU answer pairs took
    20.4 s with rouge_score's stemmer and 10.0 s with this one (measured beside another job, so the
    ratio, not the seconds)."""

    def __init__(self):
        from nltk.stem import porter  # deferred with rouge_score, which depends on nltk

        self.stem = functools.lru_cache(maxsize=None)(porter.PorterStemmer().stem)


class RougeWords:
    """rouge_score's own tokenizer (a-z and 0-9 words, lowercased, Porter-stemmed beyond 3 letters),
    with the memoized stemmer."""

    def __init__(self):
        self.stemmer = MemoStemmer()

    def tokenize(self, text: str) -> list[str]:
        from rouge_score import tokenize

        return tokenize.tokenize(text, self.stemmer)


class UnicodeWords:
    """A rouge_score tokenizer that keeps words of every script (lowercased, `\\w+`), stemming the
    ASCII ones with Porter as rouge_score does (`stem=False`: none, as MUSE scores); its own tokenizer
    keeps only a-z and 0-9."""

    def __init__(self, stem: bool = True):
        self.stemmer = MemoStemmer() if stem else None

    def tokenize(self, text: str) -> list[str]:
        words = re.findall(r"\w+", text.lower())
        if self.stemmer is None:
            return words
        return [self.stemmer.stem(w) if w.isascii() and len(w) > 3 else w for w in words]


def prefetch_rouge() -> None:
    """Start rouge_score's import (nltk: about a second) on a thread, for a caller about to generate
    the answers it will score (tru_cli/prefetch.py)."""
    prefetch.in_background("rouge_score.rouge_scorer")


def rouge_recalls(references: list[str], generations: list[str], unicode: bool = False) -> list[dict]:
    """ROUGE-1 and ROUGE-L recall per pair (TOFU: rouge_score, stemmed); `unicode`: over words of any
    script (translated answers), with UnicodeWords."""
    with collector.paused():  # deferred: it loads nltk (about a second); training never needs it
        from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], tokenizer=UnicodeWords() if unicode else RougeWords())
    out = []
    for ref, gen in zip(references, generations, strict=True):
        s = scorer.score(ref, gen)
        out.append({"rouge1_recall": s["rouge1"].recall, "rougeL_recall": s["rougeL"].recall})
    return out


def truth_ratio(item: dict) -> float | None:
    """R = p_para / p_pert (TOFU's curr_stat_1) for one item, or None without perturbations."""
    pert = item.get("average_perturb_loss")
    para = item.get("avg_paraphrased_loss")
    if not pert or para is None:
        return None
    return float(math.exp(float(np.mean(pert)) - para))


def _ratios(items: list[dict]) -> np.ndarray:
    values = [truth_ratio(i) for i in items]
    return np.array([v for v in values if v is not None], dtype=float)


def aggregate_set(name: str, items: list[dict]) -> dict[str, float]:
    """prob, ROUGE-L/ROUGE-1 recall and truth ratio of one eval set, as TOFU aggregates them."""
    short, out = SHORT[name], {}
    gt = np.array([i["avg_gt_loss"] for i in items if i.get("avg_gt_loss") is not None], dtype=float)
    if len(gt):
        p_true = np.exp(-gt)
        if name in ("forget", "retain"):
            out[f"{short}_prob"] = float(np.mean(p_true))
        else:
            pert = [i.get("average_perturb_loss") for i in items if i.get("avg_gt_loss") is not None]
            if all(pert):
                p_false = np.exp(-np.array(pert, dtype=float)).sum(-1)
                out[f"{short}_prob"] = float(np.mean(p_true / (p_true + p_false)))
    for key in ("rougeL_recall", "rouge1_recall"):
        values = [i[key] for i in items if i.get(key) is not None]
        if values:
            out[f"{short}_{key}"] = float(np.mean(values))
    ratios = _ratios(items)
    if len(ratios):
        if name == "forget":
            out[f"{short}_truth_ratio"] = float(np.mean(np.minimum(ratios, 1 / ratios)))
        else:
            out[f"{short}_truth_ratio"] = float(np.mean(np.maximum(0, 1 - 1 / ratios)))
    return out


def forget_quality(forget_items: list[dict], retain_model_forget_items: list[dict]) -> dict[str, float]:
    """KS test of the model's per-item forget truth ratios against the retain model's."""
    ours, theirs = _ratios(forget_items), _ratios(retain_model_forget_items)
    if not len(ours) or not len(theirs):
        return {}
    with collector.paused():  # deferred: scipy.stats takes 0.2 s, and training imports this module
        from scipy.stats import ks_2samp

    test = ks_2samp(ours, theirs)
    return {"forget_quality": float(test.pvalue), "forget_ks_statistic": float(test.statistic)}


def mia_auc(sets: dict[str, list[dict]]) -> float | None:
    """Min-40% membership AUC of forget (members) against holdout (non-members) answers, in MUSE's
    convention (see metrics/mia.py), or None without both sets' scores."""
    scores = {name: [i["mink_40"] for i in sets.get(name) or [] if i.get("mink_40") is not None]
              for name in ("forget", "holdout")}
    if not scores["forget"] or not scores["holdout"]:
        return None
    return mia.forget_holdout_auc(scores["forget"], scores["holdout"])


def privleak(sets: dict[str, list[dict]], retain_sets: dict[str, list[dict]] | None) -> dict[str, float]:
    """privleak = (AUC_model - AUC_retain) / AUC_retain x 100 [≈0 is best: like a model that never
    saw the forget set; about -100 = the forget set is plainly recognisable]. AUC_retain comes from
    the retain model's logs, 0.5 (chance) without them, as OpenUnlearning does."""
    auc = mia_auc(sets)
    if auc is None:
        return {}
    reference = mia_auc(retain_sets) if retain_sets else None
    if reference is None:
        log.warning("privleak: no retain-model membership scores; AUC_retain = 0.5")
        reference = 0.5
    return {"mia_min_k_auc": auc, "privleak": mia.privleak(auc, reference), "privleak_reference_auc": reference}


# Metrics reported as missing (null, with a warning) rather than left out when their inputs are absent.
HEADLINE = ("forget_rougeL_recall", "forget_prob", "forget_truth_ratio", "forget_quality", "model_utility",
            "privleak", "extraction_strength")


def aggregate(sets: dict[str, list[dict]], retain_sets: dict[str, list[dict]] | None = None) -> dict:
    """All TOFU metrics, namespaced `tofu/...`; a headline metric whose inputs are absent is None."""
    flat: dict[str, float | None] = {}
    for name in SETS:
        if sets.get(name):
            flat.update(aggregate_set(name, sets[name]))
    if all(k in flat for k in UTILITY_KEYS):
        with collector.paused():  # deferred: see forget_quality
            from scipy.stats import hmean

        flat["model_utility"] = float(hmean([max(flat[k], 0.0) for k in UTILITY_KEYS]))
    else:
        missing = [k for k in UTILITY_KEYS if k not in flat]
        log.warning("model_utility is missing: no %s", ", ".join(missing))
    if retain_sets and retain_sets.get("forget") and sets.get("forget"):
        flat.update(forget_quality(sets["forget"], retain_sets["forget"]))
    else:
        log.warning("forget_quality is missing: no retain-model logs (set eval.retain_logs=DIR)")
    es = [i["extraction_strength"] for i in sets.get("forget") or [] if i.get("extraction_strength") is not None]
    if es:
        flat["extraction_strength"] = float(np.mean(es))
    flat.update(privleak(sets, retain_sets))
    for key in HEADLINE:
        flat.setdefault(key, None)
    return {f"tofu/{k}": v for k, v in flat.items()}
