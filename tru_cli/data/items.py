"""How a benchmark row is named and read: its id, the user message it stands for, and its text.

Target generation, unlearning and attacks all key forget items the same way, so a target written
for an item is found again by the run that trains on it."""

from __future__ import annotations


def item_id(row: dict, index: int, split: str) -> str:
    """The row's own `id`, else its position in the split (`forget10-0003`)."""
    return str(row.get("id") or f"{split}-{index:04d}")


def query(row: dict) -> str:
    """The user message of a forget item: TOFU's question, or a MUSE/WMDP passage (the paper puts
    "the raw data point from the unlearning set" in the user turn)."""
    return row["question"] if "question" in row else row["text"]


def row_text(row: dict) -> str:
    """One string per row of any benchmark file (tokenizer training, stand-in finetuning)."""
    if "text" in row:
        return str(row["text"])
    if "prompt" in row:
        return f"{row['prompt']}{row.get('gt', '')}"
    if "choices" in row:
        return " ".join([str(row["question"]), *map(str, row["choices"])])
    return f"Question: {row.get('question', '')}\nAnswer: {row.get('answer', '')}"


def judge_queries(rows: list[dict] | None, split: str, max_items: int | None) -> list[dict]:
    """Free-text queries for the LLM judge: (id, question) of the first `max_items` rows."""
    rows = (rows or [])[: max_items or None]
    return [{"id": item_id(r, i, split), "question": r["question"]} for i, r in enumerate(rows)]
