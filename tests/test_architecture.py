"""The house rules of tru_cli/, checked by reading its imports with `ast` (nothing is imported):
every module sits on one layer of the pipeline, imports only from its own layer or lower ones, and
no import circle exists. A deferred import of a tru_cli module (inside a function) carries a comment
saying why, since deferring is kept for start-up time only."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tru_cli"

# Lowest first. A module's layer is the first entry that is its name or a package above it.
LAYERS = [
    ["tru_cli", "tru_cli.errors", "tru_cli.redact", "tru_cli.store", "tru_cli.distributed",
     "tru_cli.checks", "tru_cli.config", "tru_cli.tracking", "tru_cli.progress", "tru_cli.timing",
     "tru_cli.threads", "tru_cli.collector", "tru_cli.prefetch"],  # core: no model, no data
    ["tru_cli.data"],                                         # rows, files, encoding
    ["tru_cli.models"],                                       # loading, batched forward and generate
    ["tru_cli.backends"],                                     # chat and template backends
    ["tru_cli.methods"],                                      # losses, trainer, finetune, unlearn
    ["tru_cli.metrics"],                                      # metric definitions, the judge
    ["tru_cli.benchmarks", "tru_cli.targets"],                # one module per benchmark; target writing
    ["tru_cli.attacks", "tru_cli.report"],                    # one module per attack; tru report
    ["tru_cli.artifacts", "tru_cli.preflight"],               # find-or-build through the store; input checks
    ["tru_cli.stages"],                                       # one thin runner per command
    ["tru_cli.runner", "tru_cli.reproduce"],                  # Hydra, several processes; the paper targets as jobs
    ["tru_cli.cli", "tru_cli.__main__"],                      # the Typer app
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer_of(name: str) -> int:
    best = None
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{name} is on no layer; add it to LAYERS"
    return best[0]


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported tru_cli module, line, deferred) for every import statement of the module."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the submodule pkg.mod when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target.split(".")[0] == "tru_cli" and target != name:
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                out.append((target, node.lineno, id(node) not in top_level))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {t for t, _, _ in imports(name, path, set(mods))} for name, path in mods.items()}


def test_every_module_is_on_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    mods = modules()
    upward = []
    for name, path in mods.items():
        for target, line, _ in imports(name, path, set(mods)):
            if layer_of(target) > layer_of(name):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} {name} -> {target}")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def commented(lines: list[str], line: int) -> bool:
    """Whether the import on `line` (1-based) carries a comment, or sits in a block of imports (blank
    lines between its groups included) under one."""
    index = line - 1
    while index >= 0:
        text = lines[index].strip()
        if "#" in text:
            return True
        if text and not text.startswith(("from ", "import ")):
            return False
        index -= 1
    return False


def test_deferred_internal_imports_say_why():
    mods = modules()
    silent = []
    for name, path in mods.items():
        lines = path.read_text().splitlines()
        for _, line, deferred in imports(name, path, set(mods)):
            if deferred and not commented(lines, line):
                silent.append(f"{path.relative_to(PACKAGE.parent)}:{line}")
    assert not silent, "deferred tru_cli imports without a comment:\n" + "\n".join(silent)


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The rules above can fail: a planted upward import and a planted circle are both reported."""
    fake = tmp_path / "tru_cli"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "a.py").write_text("from tru_cli.data import b\nfrom tru_cli import cli\n")
    (fake / "data" / "b.py").write_text("import tru_cli.data.a\n")
    (fake / "cli.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    edges = graph()
    assert edges["tru_cli.data.a"] == {"tru_cli.data.b", "tru_cli.cli"}
    assert edges["tru_cli.data.b"] == {"tru_cli.data.a"}
    with pytest.raises(AssertionError, match="tru_cli.data.a -> tru_cli.cli"):
        test_no_module_imports_a_higher_layer()
    with pytest.raises(AssertionError, match="tru_cli.data.a -> tru_cli.data.b -> tru_cli.data.a"):
        test_no_import_cycles()


# ---- one benchmark interface ----

INTERFACE = ("training_rows", "forget_rows", "retain_rows", "all_text", "evaluate", "judge_sets", "attack_sets",
             "from_logs", "published_checkpoint", "USES_RETAIN_LOGS", "HEADLINE")


def test_every_benchmark_module_provides_the_interface_and_every_config_finds_its_module(config):
    import importlib

    from tru_cli import benchmarks
    from tru_cli.config import group_options

    assert benchmarks.names() == ["muse", "real_knowledge", "tofu", "wmdp"]
    for name in benchmarks.names():
        module = importlib.import_module(f"tru_cli.benchmarks.{name}")
        assert [f for f in INTERFACE if not hasattr(module, f)] == [], name
    for option in group_options("benchmark"):
        bench = config("eval", f"benchmark={option}").benchmark
        assert benchmarks.of(bench).__name__ == f"tru_cli.benchmarks.{bench.format}"


def test_an_unknown_benchmark_format_names_the_modules(config):
    from omegaconf import OmegaConf

    from tru_cli import benchmarks
    from tru_cli.errors import TruError

    bench = OmegaConf.merge(config("eval").benchmark, {"format": "gsm8k"})
    with pytest.raises(TruError, match="benchmark.format=gsm8k .* choose muse, real_knowledge, tofu, wmdp"):
        benchmarks.of(bench)


def test_no_benchmark_switch_outside_the_lookup():
    """Benchmarks are told apart by `benchmarks.of` alone: no `format ==` test anywhere else."""
    switch = re.compile(r"\bformat\s*(==|!=|\bin\b)|==\s*['\"](tofu|muse|wmdp)['\"]")
    found = [f"{p.relative_to(PACKAGE.parent)}:{n}" for p in PACKAGE.rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1) if switch.search(line.split("#")[0])]
    assert not found, found
