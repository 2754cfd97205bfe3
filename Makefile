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
# Content only, not modification time: nbdev-export rewrites pyproject.toml unchanged, which must not reinstall.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)-$(shell echo '$(TORCH) $(TORCH_INDEX)' | sha256sum | cut -c1-6)

.PHONY: help install demo export test test-fast lab bench docs wheel clean notebook

# Set `prodkit` as the kernel of new notebooks in this venv's JupyterLab (merged into its jupyter_server_config.json).
define LAB_DEFAULT_KERNEL
import json, pathlib, sys
p = pathlib.Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.json")
cfg = json.loads(p.read_text()) if p.exists() else {}
cfg.setdefault("MultiKernelManager", {})["default_kernel_name"] = "prodkit"
p.parent.mkdir(parents=True, exist_ok=True); p.write_text(json.dumps(cfg, indent=2) + "\n")
endef
export LAB_DEFAULT_KERNEL

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv: pinned CPU torch, prodkit editable with dev extras, the `prodkit` kernel, nbdev git hooks

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name prodkit --display-name "Python (prodkit)" >/dev/null
	@$(BIN)/python -c "$$LAB_DEFAULT_KERNEL"   # JupyterLab opens new notebooks on the `prodkit` kernel
	@if [ -d .git ]; then \
	  $(BIN)/nbdev-install-hooks --diff False >/dev/null && \
	  git config -f .gitconfig merge.jupyternotebook.driver "$(BIN)/nbdev-merge %O %A %B %P" && \
	  install -m 755 .githooks/pre-commit "$$(git rev-parse --git-path hooks)/pre-commit"; fi
	@rm -f $(VENV)/.installed-*; touch $@
	@echo "prodkit installed in $(VENV)"

demo: install ## prodkit pipeline demo: the steps in conf/pipeline/demo.yaml, then the registry
	$(BIN)/prodkit pipeline demo
	$(BIN)/prodkit registry list
	@echo "Next: $(BIN)/prodkit runs | $(BIN)/prodkit registry history | make lab"

export: install ## nbs/*.ipynb -> prodkit/*.py (nbdev-export)
	$(BIN)/nbdev-export

test: install ## fail if prodkit/ or nbs/ is out of sync or unclean, lint, then nbdev-test and pytest
	$(BIN)/python -m prodkit.cli.hygiene check
	$(BIN)/ruff check --quiet prodkit tests bench
	$(BIN)/nbdev-test --n-workers 2
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15   # a file's tests share one worker (and its fixtures)

test-fast: install ## the developer's loop (about a minute): sync + lint, nbdev-test of the notebooks changed since main, pytest without the slow tests
	$(BIN)/python -m prodkit.cli.hygiene check
	$(BIN)/ruff check --quiet prodkit tests bench
	@changed=$$( { git diff --name-only main -- 'nbs/*.ipynb' 'nbs/**/*.ipynb'; git ls-files --others --exclude-standard -- nbs; } 2>/dev/null \
	  | grep '\.ipynb$$' | sort -u ); \
	if [ -z "$$changed" ]; then echo "nbdev-test: no notebook changed since main"; fi; \
	for nb in $$changed; do if [ -f "$$nb" ]; then echo "nbdev-test $$nb"; $(BIN)/nbdev-test "$$nb" || exit 1; fi; done
	$(BIN)/python -m pytest -q -m "not slow" -p no:cacheprovider -n 2

docs: install ## the manual: nbs/ rendered offline into _docs/site/ (Sphinx, myst-nb, furo), links and assets checked
	$(BIN)/python -m prodkit.cli.docs

wheel: install ## dist/prodkit-VERSION-py3-none-any.whl, the template packed inside: `prodkit new` where it is installed, no checkout
	$(BIN)/python -c "from prodkit.cli.new import pack_template; print('template packed into', pack_template())"
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist .

bench: install ## benchmarks in bench/: a table here, JSON in bench/results/
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# `make notebook NAME=research/17_features` starts nbs/research/17_features.ipynb (module `prodkit.research.features`); `FROM=path/17_features.py`
# converts a jupytext percent file into the band its `#| default_exp band.module` line names (creating or updating the notebook).
# Either way it ends clean and exported, as `make test` wants it.
notebook: install ## new or updated library notebook, clean and exported: NAME=research/17_features, or FROM=file.py (jupytext percent)
	@set -e; src='$(FROM)'; \
	if [ -n "$$src" ]; then \
	  mod=$$(sed -n 's/^#| *default_exp *\([A-Za-z0-9_.]*\).*/\1/p' "$$src" | head -1); \
	  test -n "$$mod" || { echo "$$src has no '#| default_exp band.module' line" >&2; exit 2; }; \
	  nb=nbs/$${mod%%.*}/$$(basename "$$src" .py).ipynb; \
	else \
	  case '$(NAME)' in */[0-9]*_*) ;; *) echo "usage: make notebook NAME=research/17_features | make notebook FROM=path/to/17_features.py" >&2; exit 2;; esac; \
	  nb=nbs/$(NAME).ipynb; stem=$$(basename '$(NAME)'); mod=$$(dirname '$(NAME)').$${stem#*_}; \
	  test ! -e "$$nb" || { echo "$$nb exists: edit it, or update it with FROM=file.py" >&2; exit 2; }; \
	  src=$$(mktemp --suffix .py); trap 'rm -f "$$src"' EXIT; \
	  printf '%s\n' '# %% [markdown]' "# # $${mod#*.}" '#' '# > One line on what this module is for.' '' \
	    '# %%' "#| default_exp $$mod" '' '# %%' '#| export' 'from __future__ import annotations' '' \
	    '# %%' 'from fastcore.test import test_eq' > "$$src"; \
	fi; \
	band=$${mod%%.*}; test -d "nbs/$$band" || { echo "no band '$$band': the bands are $$(cd nbs && echo */ | tr -d /)" >&2; exit 2; }; \
	upd=; test ! -e "$$nb" || upd=--update; \
	$(BIN)/jupytext --quiet --to ipynb --set-kernel prodkit $$upd -o "$$nb" "$$src"; \
	$(BIN)/nbdev-clean --fname "$$nb"; \
	$(BIN)/nbdev-export; \
	echo "$$nb is clean and exported to prodkit/$$(echo $$mod | tr . /).py"

lab: install ## JupyterLab on 127.0.0.1 with the `prodkit` kernel
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,)

clean: ## remove .venv, run outputs and caches (keeps data/)
	rm -rf $(VENV) runs .pytest_cache .ruff_cache build dist *.egg-info _proc _docs prodkit/template.tar.gz
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
