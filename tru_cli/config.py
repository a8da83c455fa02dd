"""Where the configs live, the resolvers they use, and validation before any model loads.

Every command composes its settings with Hydra from `conf/` (a checkout) or the copy packaged
inside `tru_cli` (an installed wheel). `validate_overrides` composes the config once per sweep
point with Hydra's compose API, so a typo fails in a fraction of a second with the valid choices,
before Hydra launches jobs and long before a model is loaded.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tru_cli import checks
from tru_cli.errors import TruError

PACKAGE_DIR = Path(__file__).resolve().parent
COMMAND_CONFIGS = {
    "finetune": "finetune",
    "generate-targets": "generate_targets",
    "unlearn": "unlearn",
    "eval": "eval",
    "attack": "attack",
    "pipeline": "pipeline",
}
# Flags that belong to Hydra itself; they are passed through untouched.
HYDRA_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn",
                          "--config-dir", "-cd", "--experimental-rerun"}
MAX_KEY = 256  # longer override keys are typos or junk; Hydra would fail on the file name they make
HYDRA_FLAGS = {"-m", "--multirun", "--resolve", "--help", "-h", "--hydra-help", "--version",
               "--shell-completion", "-sc", "--run", "-r"}


def conf_dir() -> Path:
    """The config tree: `conf/` beside the package in a checkout, `tru_cli/conf` in a wheel."""
    checkout = PACKAGE_DIR.parent / "conf"
    if (checkout / "_common.yaml").is_file():
        return checkout
    installed = PACKAGE_DIR / "conf"
    if (installed / "_common.yaml").is_file():
        return installed
    raise TruError(f"config tree not found (looked in {checkout} and {installed}); reinstall tru")


def experiments_root() -> Path:
    """The folder that holds `experiments/` (one overlay per paper table), for Hydra's search path."""
    checkout = PACKAGE_DIR.parent
    return checkout if (checkout / "experiments").is_dir() else PACKAGE_DIR


def split_percent(forget_split: str) -> int:
    match = re.fullmatch(r"forget(\d\d)", str(forget_split))
    if not match or int(match.group(1)) not in (1, 5, 10):
        raise TruError(
            f"benchmark.forget_split={forget_split} is not a TOFU split; use forget01, forget05 or forget10"
        )
    return int(match.group(1))


_FRESH: dict[str, str] = {}  # base -> the folder this process claimed for it


def fresh_dir(base: str) -> str:
    """A run or sweep folder no other run has: `base` itself, or `base-1`, `base-2`, ... when another
    command (started in the same second) took it first. The folder is made here, atomically, so two
    processes can never claim the same one; within one process the same base gives the same folder."""
    if base not in _FRESH:
        path, n = Path(base), 0
        while True:
            candidate = path if n == 0 else path.with_name(f"{path.name}-{n}")
            try:
                candidate.mkdir(parents=True)
                break
            except FileExistsError:
                n += 1
        _FRESH[base] = str(candidate)
    return _FRESH[base]


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("tru.retain_split"):
        OmegaConf.register_new_resolver(
            "tru.retain_split", lambda s: f"retain{100 - split_percent(s):02d}"
        )
        OmegaConf.register_new_resolver(
            "tru.holdout_split", lambda s: f"holdout{split_percent(s):02d}"
        )
        # cached in the config, as Hydra's `now` is: a sweep's jobs (in this process or, with submitit,
        # in others) read the folder the launching process claimed instead of claiming another
        OmegaConf.register_new_resolver("tru.fresh_dir", fresh_dir, use_cache=True)


_register_resolvers()


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra flags with their values, overrides): argparse wants the flags before the overrides."""
    flags, overrides, expect_value = [], [], False
    for arg in args:
        if expect_value:
            flags.append(arg)
            expect_value = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            flags.append(arg)
            expect_value = True
        elif arg.startswith("-"):
            flags.append(arg)
        else:
            overrides.append(arg)
    return flags, overrides


def hydra_overrides(args: list[str]) -> list[str]:
    """The `key=value` overrides among the CLI arguments, without Hydra's own flags and keys."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        out.append(arg)
    return out


def expand_sweeps(overrides: list[str], limit: int = 256) -> list[list[str]]:
    """Cartesian product of sweep overrides (`a=1,2`, `range(0,3)`, `group=x,y`), as Hydra's sweeper."""
    axes = []
    for parsed in OverridesParser.create().parse_overrides(overrides=overrides):
        if parsed.is_sweep_override():
            key = parsed.get_key_element()
            axes.append([f"{key}={v}" for v in parsed.sweep_string_iterator()])
        else:
            axes.append([parsed.input_line])
    combos = list(itertools.islice(itertools.product(*axes), limit))
    return [list(c) for c in combos]


def compose(command: str, overrides: list[str]) -> DictConfig:
    """Compose one command's config (no Hydra run dir, no logging set-up)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir()), job_name=command):
        return hydra_compose(config_name=COMMAND_CONFIGS[command],
                             overrides=[*overrides, *searchpath_override()])


def searchpath_override() -> list[str]:
    return [f"hydra.searchpath=[file://{experiments_root()}]"]


def group_options(group: str) -> list[str]:
    """The options of a config group that a user picks (`_name.yaml` files are shared bases)."""
    folder = experiments_root() / "experiments" if group == "experiments" else conf_dir() / group
    names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
    return [n for n in names if not n.startswith("_")]


def _explain(exc: Exception, command: str, overrides: list[str]) -> str:
    """Turn Hydra's and OmegaConf's composition errors into one line with the valid choices."""
    text = str(exc).strip()
    if exc.__cause__ is not None:
        text += "\n" + str(exc.__cause__)
    missing_option = re.search(r"Could not find '([\w/.-]+)/([^']+)'", text)
    if missing_option:
        group, option = missing_option.groups()
        choices = ", ".join(group_options(group)) or "(none)"
        return f"unknown option '{group}={option}'; valid choices for '{group}': {choices}"
    missing_key = re.search(r"Key '([^']+)' is not in struct\s+full_key: ([\w.\[\]]+)", text)
    if missing_key:
        full_key = missing_key.group(2)
        parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
        return (f"unknown key '{full_key}'; valid keys under '{parent or '<root>'}': "
                f"{_valid_keys(command, parent, overrides)} (prefix with + to add a new key)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return re.sub(r"^\w+ raised while resolving interpolation: ", "", first)


def _valid_keys(command: str, parent: str, overrides: list[str]) -> str:
    """The keys under `parent`, composed without the key overrides (one of them is the bad one)."""
    try:
        groups_only = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0]]
        cfg = compose(command, groups_only)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if isinstance(node, DictConfig):
            return ", ".join(str(k) for k in node.keys())
    except Exception:  # the listing is a courtesy; the error itself is already known
        pass
    return "(see tru <command> --cfg job)"


def unknown_flags(args: list[str]) -> list[str]:
    """Dash-arguments that are not Hydra's flags (Hydra's own parser would end in a traceback)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif arg.startswith("-") and arg not in HYDRA_FLAGS:
            out.append(arg)
    return out


def validate_overrides(command: str, args: list[str], more_checks=None) -> list[DictConfig]:
    """Compose every sweep point and resolve it, then check its values and paths (checks.py) and, with
    `more_checks(cfg) -> [problems]`, its inputs; raise TruError naming the first composition
    problem, or every other problem at once. Returns the composed points."""
    unknown = unknown_flags(args)
    if unknown:
        raise TruError(f"unknown flag {' '.join(unknown)}; tru {command} takes key=value overrides and Hydra's "
                       f"flags (-m, --cfg job, --info, --hydra-help); see tru {command} --help")
    overrides = hydra_overrides(args)
    long = [o.split("=", 1)[0] for o in overrides if len(o.split("=", 1)[0]) > MAX_KEY]
    if long:
        raise TruError(f"override key '{long[0][:40]}...' has {len(long[0])} characters; no config key is longer "
                       f"than {MAX_KEY} (see tru {command} --cfg job for the keys)")
    try:
        points = expand_sweeps(overrides) if overrides else [[]]
    except HydraException as exc:
        raise TruError(f"cannot parse overrides: {str(exc).splitlines()[0]}") from None
    found: list[str] = []
    configs: list[DictConfig] = []
    for point in points:
        try:
            cfg = compose(command, point)
            configs.append(cfg)
            OmegaConf.to_container(cfg, resolve=True)
        except TruError:
            raise
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, TruError) else None
            if cause is not None:
                raise cause from None
            raise TruError(_explain(exc, command, point)) from None
        found += [p for p in checks.problems(cfg) + (more_checks(cfg) if more_checks else []) if p not in found]
    for arg in args:  # the run and sweep folders Hydra will create
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "hydra.sweep.dir") and value and not checks.writable(Path(value)):
            found.append(f"{key}={value} cannot be written; point it at a writable folder")
    if found:
        raise TruError(f"{len(found)} problem{'s' if len(found) > 1 else ''}: " + " | ".join(found))
    return configs
