# tru: make demo (the whole pipeline on the embedded default) and make test.
VENV ?= .venv
PY := $(VENV)/bin/python
TRU := $(VENV)/bin/tru
# The embedded default never needs the hub; these make any accidental hub access fail at once.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: install demo test test-fast lint bench compare clean

install: $(VENV)/.installed

# torch is pinned in the same pip command as the project, so nothing pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[dev,quantize]'
	touch $@

demo: install
	$(OFFLINE) $(TRU) pipeline

# The full suite, as CI runs it (.ci/run).
test: install
	$(OFFLINE) WANDB_MODE=disabled $(PY) -m pytest -q

# Day-to-day: the suite without the end-to-end runs marked slow.
test-fast: install
	$(OFFLINE) WANDB_MODE=disabled $(PY) -m pytest -q -m "not slow"

# TRU and every baseline with the same budget, then one table and two plots (runs/compare/report/).
compare: install
	$(OFFLINE) $(TRU) pipeline -m experiments=compare hydra.sweep.dir=runs/compare
	$(OFFLINE) $(TRU) report runs/compare

lint: install
	$(VENV)/bin/ruff check tru_cli tests benchmarks

bench: install
	$(OFFLINE) WANDB_MODE=disabled $(PY) benchmarks/bench.py

clean:
	rm -rf runs .tru_store
