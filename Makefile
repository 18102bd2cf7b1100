# The README's two commands: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo surv lint docs test test-slow test-all test-fast bench clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name nexara --display-name "Python (nexara)"
	touch $(STAMP)

demo: install  ## synthetic data, whole pipeline, CPU, under 5 minutes of notebook time on 2 cores
	$(VENV)/bin/nexara run -f params/base.yaml -f params/demo.yaml

surv: install  ## the real surveillance clips in ../shared/data/surv-fight-dev
	$(VENV)/bin/nexara run -f params/base.yaml -f params/surv_dev.yaml

lint: install  ## ruff (lint + format check) and mypy on nexara_lib, configured in pyproject.toml
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: install  ## regenerate docs/parameters.md from the parameter schema (tests/test_docs.py checks it is current)
	$(VENV)/bin/nexara params --out docs/parameters.md

# Two pytest workers; the tests that read the one smoke run share a worker (xdist_group "smoke_run").
XDIST := -n 2 --dist loadgroup

test: install  ## the test suite without the tests marked slow: under 8 minutes on 2 cores
	$(PY) -m pytest -q -ra $(XDIST) -m "not slow"

test-slow: install  ## the long tests (reruns, real clips, fault injection with real kernels); CI runs them after `make test`
	$(PY) -m pytest -q -ra $(XDIST) -m slow

test-all: install  ## everything, in one pytest session
	$(PY) -m pytest -q -ra $(XDIST)

test-fast: install  ## unit tests only, no notebook runs
	$(PY) -m pytest -q -m "not e2e"

bench: export NEXARA_PRETRAINED_DIR ?= $(abspath ../shared/models)
bench: install  ## speed benchmarks, JSON reports under outputs/bench/ (not tests: nothing asserts on a time)
	$(PY) -m benchmarks.bench_training --out outputs/bench/training.json
	$(PY) -m benchmarks.bench_extraction --out outputs/bench/extraction.json
	$(PY) -m benchmarks.bench_detect --out outputs/bench/detect.json
	$(PY) -m benchmarks.bench_study --out outputs/bench/study.json  # long: surv_dev's whole selection, three times

clean:
	rm -rf outputs/* .pytest_cache
