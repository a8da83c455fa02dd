"""Generation backends behind one interface: `offline` (templates, no model), `openai` (any
OpenAI-compatible endpoint) and `hf` (a local transformers model). The last two answer chat
requests through a `ChatService` (cache, validation retries, counts); targets, the judge, and the
translation and paraphrase attacks all use it."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import DictConfig

from tru_cli.backends.cache import RequestCache
from tru_cli.backends.chat import ChatService, Prices
from tru_cli.backends.offline import OfflineBackend
from tru_cli.errors import TruError

CHAT_BACKENDS = ("openai", "hf")


def make_backend(cfg, criteria: bool = True):
    """The offline target backend (`generator.backend=offline`)."""
    if cfg.backend == "offline":
        return OfflineBackend(model=cfg.model, criteria=criteria)
    raise TruError(f"generator.backend={cfg.backend} is not a template backend; choose: offline")


def chat_service(section_cfg: DictConfig, section: str, device: DictConfig,
                 default_model: Callable[[], str], label: str):
    """A ChatService for `<section>` (generator or judge). `default_model` gives the local model
    used by the hf backend when `<section>.model` is null (the run's own model)."""
    kind = section_cfg.backend
    if kind == "openai":
        # deferred: the openai client is slow to import, and only this backend needs it
        from tru_cli.backends.openai_api import OpenAIChat

        backend = OpenAIChat(section_cfg, section)
    elif kind == "hf":
        from tru_cli.backends.local import HFChat  # deferred: torch and transformers

        backend = HFChat(section_cfg, section_cfg.model or default_model(), device)
    else:
        raise TruError(f"{section}.backend={kind} cannot answer chat requests; "
                       f"choose {section}={' or '.join(f'{section}={b}' for b in CHAT_BACKENDS)}")
    prices = section_cfg.get("price_per_mtok") or {}
    budget = section_cfg.get("budget_usd")
    return ChatService(backend, RequestCache(section_cfg.get("cache")), int(section_cfg.max_attempts),
                       Prices(prices.get("input"), prices.get("output")), label=label,
                       budget_usd=None if budget is None else float(budget), section=section)
