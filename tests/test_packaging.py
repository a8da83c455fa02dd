"""The wheel: built from a copy of the checkout by setuptools' PEP 517 backend, installed into a
folder of its own, and run from outside the checkout, so nothing the editable install hides
(a subpackage left out, configs not packaged) can pass."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, tru_env

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "setup.py", "README.md", "tru_cli", "conf", "experiments")
IMPORT_ALL = """
import importlib, json, pkgutil, tru_cli
names = sorted(m.name for m in pkgutil.walk_packages(tru_cli.__path__, "tru_cli.")
               if not m.name.endswith("__main__"))
for name in names:
    importlib.import_module(name)
print(json.dumps({"file": tru_cli.__file__, "modules": names}))
"""


def checkout_modules() -> list[str]:
    out = []
    for path in (ROOT / "tru_cli").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "tru_cli" and not name.endswith("__main__"):
            out.append(name)
    return sorted(out)


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed")
def test_the_wheel_ships_every_module_and_runs_outside_the_checkout(tmp_path):
    import json

    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        kwargs = {"ignore": shutil.ignore_patterns("__pycache__", "local")} if (ROOT / name).is_dir() else {}
        copy(ROOT / name, src / name, **kwargs)
    build = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                            "print(build_meta.build_wheel(sys.argv[1]))", str(tmp_path / "dist")],
                           cwd=src, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = tmp_path / "dist" / build.stdout.strip().splitlines()[-1]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                    "--target", str(tmp_path / "site"), str(wheel)], check=True)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = tru_env(elsewhere, PYTHONPATH=str(tmp_path / "site"))
    env.pop("PYTHONSAFEPATH", None)
    probe = subprocess.run([sys.executable, "-c", IMPORT_ALL], cwd=elsewhere, env=env, capture_output=True,
                           text=True)
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["file"].startswith(str(tmp_path / "site" / "tru_cli")), found["file"]  # the wheel's copy
    # every module of the checkout, and the config tree and overlays as packages of their own
    assert found["modules"] == sorted([*checkout_modules(), "tru_cli.conf", "tru_cli.experiments"])

    proc = subprocess.run([sys.executable, "-m", "tru_cli", "eval", "benchmark=muse_news", "--cfg", "job"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "muse-bench/MUSE-News" in proc.stdout and "verbmem_forget" in proc.stdout
    assert os.listdir(elsewhere) == []  # --cfg job runs nothing and writes nothing
