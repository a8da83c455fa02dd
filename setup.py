"""Package discovery for the wheel (everything else is in pyproject.toml): every package under
tru_cli/ as found on disk, plus the config tree (conf/) and the experiment overlays (experiments/),
which live at the top of the checkout and travel inside the wheel as tru_cli.conf and
tru_cli.experiments (pyproject's package-dir maps them). pyproject.toml alone cannot combine
`packages.find` with packages mapped from other folders."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["tru_cli", "tru_cli.*"]), "tru_cli.conf", "tru_cli.experiments"])
