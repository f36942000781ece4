# IsoCLIP companion. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= default
DATA_ROOT ?=
NOTEBOOKS_OUT ?= executed
MATHJAX := _static/mathjax/tex-svg.js
MATHJAX_VERSION := 3.2.2

.PHONY: help venv test notebooks book check-book ci benchmarks clean clean-cache

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned first: pip takes them from this machine's disk (see README)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test,book]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with the pinned dependencies

test: $(STAMP) ## Run the test suite
	$(PY) -m pytest -q

$(MATHJAX):
	mkdir -p _static/mathjax && tmp=$$(mktemp -d) && \
	  (cd $$tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz) && \
	  cp $$tmp/package/es5/tex-svg.js $(MATHJAX) && rm -rf $$tmp

notebooks: $(STAMP) ## Execute every notebook with papermill (PARAMS=default)
	$(PY) -m isoclip.notebooks --params $(PARAMS) --out $(NOTEBOOKS_OUT) $(if $(DATA_ROOT),--set data_root=$(DATA_ROOT))

book: notebooks $(MATHJAX) ## Build the book strictly from the executed notebooks (embedded default)
	$(VENV)/bin/jupyter-book build . -n -W --keep-going

check-book: $(STAMP) ## Open every page of the built book in headless Chromium
	$(PY) tools/check_book.py _build/html

benchmarks: $(STAMP) ## Run the benchmark scripts (print figures)
	for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean: ## Remove build products (keeps the model/feature cache)
	rm -rf _build executed

clean-cache: ## Remove the isoclip cache (trained models, features)
	rm -rf $${ISOCLIP_CACHE:-$$HOME/.cache/isoclip}
