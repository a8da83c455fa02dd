"""What every run leaves: config.yaml (secrets removed), results.json per the run contract, and a
wandb run with the same config and metrics. results.json is written at the start (`running`)
and rewritten at the end (`completed`, or `failed` with the error), so a crash is visible.

wandb starts on a thread once the command's imports are done (`start_tracking`), so its import and
its service's start-up run beside the work. Measured with `tru unlearn experiments=smoke`, wandb
offline, 2 idle cores, 3 runs each: process start to the first training step 4.02-4.38 s when wandb
started before the work, 3.51-3.69 s this way; started on a thread at once, its import competed
with the command's own imports and gained nothing (4.07-4.25 s)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import re
import subprocess
import threading
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tru_cli import __version__, collector, timing
from tru_cli.redact import scrub

log = logging.getLogger("tru")
# Keys whose values are secrets; `max_tokens`, `max_new_tokens` and `tokenizer` are not.
SECRET_KEY = re.compile(r"(api_?key|(^|_)(access_|auth_|hf_)?token$|secret|password|authorization)", re.IGNORECASE)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def redact(node):
    """Drop values whose key names a secret (`*_env` keys hold variable names, not secrets)."""
    if isinstance(node, dict):
        return {k: ("<redacted>" if SECRET_KEY.search(str(k)) and not str(k).endswith("_env")
                    and node[k] is not None else redact(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [redact(v) for v in node]
    return node


def plain_config(cfg: DictConfig) -> dict:
    return redact(OmegaConf.to_container(cfg, resolve=True))


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    # deferred: torch and transformers take seconds; a config-only command needs neither
    import torch
    import transformers

    return {"tru": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "git_commit": git_commit()}


def device_info(cfg: DictConfig) -> dict:
    import torch  # deferred: see versions()

    info = {"accelerator": cfg.device.accelerator, "dtype": cfg.device.dtype,
            "mixed_precision": cfg.device.mixed_precision,
            "num_processes": int(os.environ.get("WORLD_SIZE", "1")), "strategy": cfg.device.get("strategy", "single"),
            "torch_threads": torch.get_num_threads()}
    if cfg.device.accelerator == "cuda" and torch.cuda.is_available():
        info["device_count"] = torch.cuda.device_count()
        info["name"] = torch.cuda.get_device_name(0)
    else:
        info["name"] = platform.processor() or platform.machine()
        info["device_count"] = 1
    return info


def wandb_mode(cfg: DictConfig) -> str:
    """`auto` becomes online only when credentials exist; WANDB_MODE always wins."""
    return resolve_wandb_mode(str(cfg.logger.get("mode", "auto")))


def resolve_wandb_mode(mode: str) -> str:
    if mode != "auto":
        return mode
    netrc = Path.home() / ".netrc"
    has_login = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    return "online" if os.environ.get("WANDB_API_KEY") or has_login else "offline"


class RunRecorder:
    """Context manager around one command's work in `run_dir`."""

    def __init__(self, command: str, cfg: DictConfig, run_dir: str | Path):
        self.command, self.cfg, self.run_dir = command, cfg, Path(run_dir)
        self.metrics: dict[str, float] = {}
        self.artifacts: dict[str, str] = {}
        self.extra: dict = {}
        self.wandb_run = None
        self._wants_wandb = False  # set by __enter__: logger=wandb, not disabled, the main process
        self._wandb_start: threading.Thread | None = None  # the thread running wandb.init, until joined
        self._pending: list[tuple[dict, int | None]] = []  # rows logged before wandb was up
        self.started_at = _now()
        self.main = int(os.environ.get("RANK", "0")) == 0  # other ranks of a multi-process run record nothing

    # -- recording --
    def add_metrics(self, metrics: dict, prefix: str = "") -> None:
        for key, value in metrics.items():  # None = missing (inputs absent, judge failed): kept as null
            self.metrics[f"{prefix}{key}"] = None if value is None else float(value)

    def add_artifact(self, name: str, path: str | Path) -> None:
        self.artifacts[name] = os.path.relpath(Path(path).resolve(), self.run_dir.resolve())

    def log_step(self, row: dict, prefix: str) -> None:
        if not self._wants_wandb:
            return
        self._pending.append(({f"{prefix}/{k}": v for k, v in row.items()
                               if isinstance(v, (int, float)) and k != "step"}, row.get("step")))
        if self._wandb_start is not None and not self._wandb_start.is_alive():
            self._flush()

    def _flush(self) -> None:
        """Hand the rows logged so far to wandb, waiting for it to start (the main thread only)."""
        if self._wandb_start is None:
            return
        self._wandb_start.join()
        rows, self._pending = self._pending, []
        if self.wandb_run is not None:
            for values, step in rows:
                self.wandb_run.log(values, step=step)

    # -- lifecycle --
    def __enter__(self) -> RunRecorder:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.main:
            return self
        self.config = plain_config(self.cfg)
        OmegaConf.save(OmegaConf.create(self.config), self.run_dir / "config.yaml")
        self._write("running")
        self._wants_wandb = self.cfg.logger.name == "wandb" and wandb_mode(self.cfg) != "disabled"
        return self

    def start_tracking(self) -> None:
        """Start the wandb run in the background: its import and its service's start-up (about
        0.7 s) overlap the work instead of delaying it; rows logged meanwhile wait in _pending."""
        if self._wants_wandb and self._wandb_start is None:
            self._wandb_start = threading.Thread(target=self._start_wandb, name="wandb-start", daemon=True)
            self._wandb_start.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "completed" if exc is None else "failed"
        error = None if exc is None else scrub(f"{type(exc).__name__}: {exc}")
        self._write(status, error)
        self.start_tracking()  # a run that failed before its work began is still recorded in wandb
        self._flush()
        if self.wandb_run is not None:
            try:
                self.wandb_run.summary.update({**self.metrics, "status": status})
                self.wandb_run.finish(exit_code=0 if exc is None else 1)
            except Exception as wandb_exc:  # tracking must never lose the run's own results
                log.warning("wandb finish failed: %s", wandb_exc)
        if exc is None:
            log.info("run dir: %s", self.run_dir)
        return False

    def _write(self, status: str, error: str | None = None) -> None:
        if not self.main:
            return
        results = {
            "command": self.command, "status": status, "metrics": self.metrics,
            "artifacts": self.artifacts, "versions": versions(), "device": device_info(self.cfg),
            "started_at": self.started_at, "finished_at": None if status == "running" else _now(),
            "timing": timing.marks(), **self.extra,
        }
        if error:
            results["error"] = error
        tmp = self.run_dir / "results.json.tmp"
        tmp.write_text(json.dumps(results, indent=2, sort_keys=False))
        tmp.replace(self.run_dir / "results.json")

    def _start_wandb(self) -> None:
        """wandb.init, on the wandb-start thread; any failure leaves wandb_run None and a warning."""
        mode = wandb_mode(self.cfg)
        os.environ.setdefault("WANDB_SILENT", "true")  # results.json and the log say where the run is
        try:
            with collector.paused():  # deferred: wandb is slow to import and logger=none never needs it
                import wandb

            self.wandb_run = wandb.init(
                project=self.cfg.logger.project, entity=self.cfg.logger.get("entity"), mode=mode,
                dir=str(self.run_dir), config=self.config, job_type=self.command,
                name=f"{self.command}-{self.run_dir.name}", tags=list(self.cfg.logger.get("tags") or []),
                reinit="finish_previous")
        except Exception as exc:  # e.g. online without network: keep the run, note the problem
            log.warning("wandb disabled for this run (%s); results.json is still written", exc)
            self.wandb_run = None
