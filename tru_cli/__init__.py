"""tru: an experiment runner for LLM unlearning built around TRU (targeted reasoning unlearning)."""

__version__ = "0.1.0"
