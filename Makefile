# prodkit: every target installs what it needs first (`make install` is idempotent and fast when nothing changed).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# Where pip finds torch. Empty: pip's configured indexes (a CPU wheel here). On a machine where that
# would fetch a CUDA build, point it at a CPU wheel index: make install TORCH_INDEX=<url>.
TORCH_INDEX ?=
BIN    := $(VENV)/bin
# The stamp is keyed on pyproject.toml's content and the torch pin: change either and `make install` reruns.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)-$(shell echo '$(TORCH) $(TORCH_INDEX)' | sha256sum | cut -c1-6)

.PHONY: help install demo export test test-fast lab bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv: pinned CPU torch, prodkit editable with dev extras, the `prodkit` kernel, nbdev git hooks

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name prodkit --display-name "Python (prodkit)" >/dev/null
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(BIN)/nbdev-install-hooks --diff False >/dev/null && \
	  git config -f .gitconfig merge.jupyternotebook.driver "$(BIN)/nbdev-merge %O %A %B %P" && \
	  install -m 755 .githooks/pre-commit "$$(git rev-parse --git-path hooks)/pre-commit"; fi
	@rm -f $(VENV)/.installed-*; touch $@
	@echo "prodkit installed in $(VENV)"

demo: install ## prodkit pipeline demo: train -> release -> batch inference on shifted test rows -> drift report
	$(BIN)/prodkit pipeline demo
	@echo "Next: $(BIN)/prodkit runs (list runs) | $(BIN)/prodkit registry list | make lab (open notebooks)"

export: install ## nbs/*.ipynb -> prodkit/*.py (nbdev-export)
	$(BIN)/nbdev-export

test: install ## fail if prodkit/ or nbs/ is out of sync or unclean, lint, then nbdev-test and pytest
	$(BIN)/python -m prodkit.hygiene check
	$(BIN)/ruff check --quiet prodkit tests bench
	$(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest

test-fast: install ## the developer's loop (about a minute): sync + lint, then pytest without the slow tests (no kernels, no training)
	$(BIN)/python -m prodkit.hygiene check
	$(BIN)/ruff check --quiet prodkit tests bench
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider

bench: install ## benchmarks in bench/: a table here, JSON in bench/results/
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lab: install ## JupyterLab on 127.0.0.1 with the `prodkit` kernel
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)

clean: ## remove .venv, run outputs and caches (keeps data/)
	rm -rf $(VENV) runs .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
