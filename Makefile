# Two commands on a fresh machine (offline but for the package registries):
#   make repro   # venv + install + `dvc repro` on the embedded default data
#   make test    # venv + install + the test suite
# `make repro PRESET=smoke` (or paper) reproduces that preset in a copy of this working tree,
# $(PRESET_DIR) (default: this folder's path + "-<preset>"), so that params.yaml, dvc.lock and the
# committed reports/ here stay the default run's: the test suite checks that params.yaml is
# presets/default.yaml, and the smoke run would overwrite the tracked reports and dvc.lock.
# Reruns reuse the copy (its data/, dvc.lock and DVC cache), refreshing only the code.
# PRESET_DIR=... picks another folder (outside this tree). `make repro PRESET=default` copies
# presets/default.yaml over params.yaml and runs here.

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

PRESET_DIR ?= $(CURDIR)-$(PRESET)
PRESET_ROOT = $(abspath $(PRESET_DIR))
# What a preset copy takes from this tree: tracked and new (not ignored) files, less the
# pipeline's own records (reports/, dvc.lock), which the copy keeps from its previous run.
PRESET_FILES = git ls-files -co --exclude-standard | grep -v -e '^reports/' -e '^dvc\.lock$$' | \
	while read -r f; do if [ -f "$$f" ]; then echo "$$f"; fi; done

repro: install
ifeq ($(PRESET),)
	dvc repro
else ifeq ($(PRESET),default)
	cp presets/default.yaml params.yaml
	dvc repro
else
	@test -f presets/$(PRESET).yaml || { echo "no preset presets/$(PRESET).yaml" >&2; exit 2; }
	@case "$(PRESET_ROOT)/" in "$(CURDIR)/"*) echo "PRESET_DIR must lie outside this tree" >&2; exit 2;; esac
	mkdir -p $(PRESET_ROOT)
	$(PRESET_FILES) | tar -cf - -T - | tar -xf - -C $(PRESET_ROOT)
	cp presets/$(PRESET).yaml $(PRESET_ROOT)/params.yaml
	test -d $(PRESET_ROOT)/.git || git -C $(PRESET_ROOT) init -q
	cd $(PRESET_ROOT) && PYTHONPATH=$(PRESET_ROOT)/lib dvc repro
	@echo "preset $(PRESET): reports in $(PRESET_ROOT)/reports (run dvc metrics show there)"
endif

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_data.py

clean-venv:
	rm -rf $(VENV)
