"""The leak filter (the paper's criterion 2): a target must not give away its forget item's answer."""

from __future__ import annotations

from rouge_score.tokenize import tokenize

from tru_cli.metrics.tofu import rouge_recalls


def leaks(answer: str | None, text: str, rouge_threshold: float | None = None, question: str = "") -> bool:
    """Whether a target gives away the forget item's answer: the answer verbatim, or most of what the
    answer adds to the question (ROUGE-L recall, over the answer's words that are not in the
    question, >= the threshold; a refusal may name the question's subject)."""
    if not answer or not answer.strip():
        return False
    if answer.strip().lower() in text.lower():
        return True
    if rouge_threshold is None:
        return False
    asked = set(tokenize(question, None))
    novel = [w for w in tokenize(answer, None) if w not in asked]
    return bool(novel) and rouge_recalls([" ".join(novel)], [text])[0]["rougeL_recall"] >= rouge_threshold
