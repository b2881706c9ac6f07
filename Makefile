# The README's commands. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# The stamp records what the install depends on: editing any of these reinstalls.
STAMP := $(VENV)/.installed
INSTALL_INPUTS := setup.cfg setup.py scripts/install_detectron2.sh Makefile

.PHONY: help install test test-fast demo lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with torch, detectron2 and sperm_d2 (idempotent)

$(STAMP): $(INSTALL_INPUTS)
	@echo "==> [1/4] virtual environment $(VENV) ($(PYTHON))"
	@[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV) || { echo "make install: step 1 failed: '$(PYTHON) -m venv' did not work; install python3-venv or set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@echo "==> [2/4] $(TORCH_PINS)"
	@$(VPY) -m pip install -q --upgrade pip >/dev/null
	@$(VPY) -m pip install -q $(TORCH_PINS) || { echo "make install: step 2 failed: pip could not install $(TORCH_PINS); check 'pip config list' (find-links / index) and disk space" >&2; exit 1; }
	@echo "==> [3/4] detectron2 (sal-detectron2 0.7.2, sha256-verified, pure Python)"
	@bash scripts/install_detectron2.sh $(VPY) || { echo "make install: step 3 failed (detectron2); see the message above" >&2; exit 1; }
	@echo "==> [4/4] sperm_d2 (editable, with dev extras)"
	@$(VPY) -m pip install -q --no-build-isolation -e '.[dev]' || { echo "make install: step 4 failed: pip install -e .[dev]; see pip's message above" >&2; exit 1; }
	@touch $(STAMP)
	@echo "==> installed into $(VENV)"

test: install  ## run the whole test suite (slow CPU training tests included)
	$(VPY) -m pytest

test-fast: install  ## run the tests not marked slow
	$(VPY) -m pytest -m "not slow"

demo: install  ## the main job end to end on a generated synthetic dataset
	bash scripts/demo.sh $(VPY) output/demo

lint: install  ## black, isort, flake8 and hadolint checks
	$(VPY) -m black --check sperm_d2 tools tests benchmarks
	$(VPY) -m isort --check-only sperm_d2 tools tests benchmarks
	$(VPY) -m flake8 sperm_d2 tools tests benchmarks
	$(VENV)/bin/hadolint docker/Dockerfile

format: install  ## apply black and isort
	$(VPY) -m isort sperm_d2 tools tests benchmarks
	$(VPY) -m black sperm_d2 tools tests benchmarks

clean:  ## remove the virtual environment and outputs
	rm -rf $(VENV) output
