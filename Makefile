# Two commands on a fresh machine (offline but for the package registries):
#   make repro   # venv + install + `dvc repro` on the embedded default data
#   make test    # venv + install + the test suite
# `make repro PRESET=smoke` first copies presets/smoke.yaml over params.yaml.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install repro test bench clean-venv

install: $(STAMP)

# torch==2.13.0 goes first: the machine holds its CPU wheel; any looser requirement would
# pull several GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

repro: install
ifdef PRESET
	cp presets/$(PRESET).yaml params.yaml
endif
	dvc repro

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_data.py

clean-venv:
	rm -rf $(VENV)
