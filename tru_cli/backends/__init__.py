"""Generation backends behind one interface (`base.TargetBackend`)."""

from tru_cli.errors import TruError


def make_backend(cfg, criteria: bool = True):
    """The backend named by `generator.backend`; `criteria` says whether the prompt holds them."""
    if cfg.backend == "offline":
        from tru_cli.backends.offline import OfflineBackend

        return OfflineBackend(model=cfg.model, criteria=criteria)
    raise TruError(f"generator.backend={cfg.backend} is not available; choose: offline")
