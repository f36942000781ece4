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
# real path (make reproduce): the chapters that take a model and datasets as parameters; the
# "Results on real models" page (20) is executed after them and renders the run's result files
REPRO_NOTEBOOKS ?= 03 05 06 07 08 09 10
# chapters of a real-path run executed at once: each loads the model and its features, so more
# than one multiplies the memory of a large model (`make reproduce-fake` uses every core)
REPRO_JOBS ?= 1
# narrow a real-path run: DATASETS=cub2011,oxford_pets (image sets), TEXT_DATASETS=coco_text
DATASETS ?=
TEXT_DATASETS ?=
# recipes read these from the environment ("$$PARAMS"): quoted there, any value is one word
export PARAMS DATA_ROOT DATASETS TEXT_DATASETS REPRO_JOBS
# result files of real-path runs (results/<params>/<chapter>.json; committed, shown in the book)
RESULTS_DIR ?= results
FAKE_DATA_ROOT ?= _build/fake-data
FAKE_RESULTS ?= _build/fake-results
MATHJAX_VERSION := 3.2.2
# parallelism: `make models JOBS=n` (default: every core), `make test TEST_JOBS=n`
JOBS ?=
# cores of `make notebooks` (default: one per core; chapters and the models' trainings share them)
NOTEBOOK_JOBS ?= $(or $(JOBS),$(shell nproc 2>/dev/null || echo 1))
TEST_JOBS ?= auto
# emoji images and names of the emoji model (npm, fetched like MathJax; outside the repository)
EMOJI_VERSION := 16.0.0
ISOCLIP_DATA ?= $(or $(ISOCLIP_CACHE),$(HOME)/.cache/isoclip)/data
EMOJI_STYLES ?= google twitter
EMOJI_DATA := $(foreach s,$(EMOJI_STYLES),$(ISOCLIP_DATA)/emoji-datasource-$(s)/emoji.json)

.PHONY: help venv test notebooks book check-book ci benchmarks regimes clean clean-cache emoji-data \
	models build-time \
	reproduce reproduce-fake lint

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@# the venv with torch's CUDA libraries measured 6.4 GB: refuse early rather than fill the disk
	@test -d $(VENV)/lib || $(PYTHON) tools/check_disk.py $(VENV) --need-gb 7 \
	  --what "the virtual environment $(VENV) (torch 2.14.1 with its CUDA libraries: 6.4 GB measured)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned first: pip takes them from this machine's disk (see README)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test,book]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with the pinned dependencies

test: $(STAMP) $(EMOJI_DATA) ## Run the test suite in parallel (TEST_JOBS=auto: one pytest-xdist worker per core)
	$(PY) -m pytest -q -n $(TEST_JOBS)

$(VENV)/.lint-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[lint]'
	touch $@

lint: $(VENV)/.lint-installed ## ruff (package, tests), mypy --strict (package), actionlint (workflows)
	@status=0; \
	  echo "== ruff check isoclip tests"; $(VENV)/bin/ruff check isoclip tests || status=1; \
	  echo "== mypy --strict isoclip"; $(VENV)/bin/mypy --strict isoclip || status=1; \
	  echo "== actionlint"; $(VENV)/bin/actionlint && echo "actionlint: no problems" || status=1; \
	  exit $$status

$(MATHJAX):
	mkdir -p _static/mathjax && tmp=$$(mktemp -d) && \
	  (cd $$tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz) && \
	  cp $$tmp/package/es5/tex-svg.js $(MATHJAX) && rm -rf $$tmp

# npm package emoji-datasource-<style>: emoji.json (names, categories) and the 64 px PNGs only
$(ISOCLIP_DATA)/emoji-datasource-%/emoji.json:
	mkdir -p $(ISOCLIP_DATA) && tmp=$$(mktemp -d) && \
	  (cd $$tmp && npm pack --silent emoji-datasource-$*@$(EMOJI_VERSION) >/dev/null && \
	   tar xzf emoji-datasource-$*-$(EMOJI_VERSION).tgz package/emoji.json package/package.json \
	     package/LICENSE package/README.md package/img/$*/64) && \
	  rm -rf $(ISOCLIP_DATA)/emoji-datasource-$* && mv $$tmp/package $(ISOCLIP_DATA)/emoji-datasource-$* && \
	  rm -rf $$tmp

emoji-data: $(EMOJI_DATA) ## Fetch the emoji images and names (npm emoji-datasource-google / -twitter)

models: $(STAMP) $(EMOJI_DATA) ## Train the book's missing models in parallel (JOBS=cores; isoclip.studies.manifest)
	$(PY) -m isoclip.studies.manifest $(if $(JOBS),--jobs $(JOBS))

# the default set: the manifest's missing models train in the same run, on the same cores, each
# chapter starting once its models are in the cache (chapters only load); other sets may train
# in the notebook
notebooks: $(STAMP) $(EMOJI_DATA) ## Execute every notebook with papermill (PARAMS=default: and train the missing models beside them)
	$(PY) -m isoclip.notebooks $(if $(filter-out default,$(PARAMS)),--train-missing,--models) --jobs $(NOTEBOOK_JOBS) --params "$$PARAMS" --out "$(NOTEBOOKS_OUT)" $(if $(DATA_ROOT),--set "data_root=$$DATA_ROOT")

book: notebooks $(MATHJAX) ## Build the book strictly from the executed notebooks (embedded default)
	$(VENV)/bin/jupyter-book build . -n -W --keep-going

# Checks first (PARAMS names a file of notebooks/params/, DATA_ROOT is a folder, every parameter
# of the set and the set reads data), then MathJax, then the build folder is replaced. PARAMS and
# DATA_ROOT reach the shell as exported variables, always quoted (spaces work, nothing splits).
# --set arguments of a real-path run: data_root made absolute, the DATASETS / TEXT_DATASETS
# narrowing as YAML lists (names checked against the registry by --check)
REPRO_SET = --set "data_root=$$(cd -- "$$DATA_ROOT" && pwd)" \
	$(if $(DATASETS),"datasets=[$$DATASETS]") $(if $(TEXT_DATASETS),"text_datasets=[$$TEXT_DATASETS]")

reproduce: $(STAMP) ## Real path: PARAMS=<set> DATA_ROOT=<dir> [DATASETS=a,b] [REPRO_JOBS=n] -> _build/reproduce-<set>/_build/html
	@case "$$PARAMS" in ""|.*|*[!A-Za-z0-9._-]*) false;; esac && test -f "notebooks/params/$$PARAMS.yaml" || \
	  { echo "make reproduce: PARAMS='$$PARAMS' is not a parameter set; known sets (notebooks/params/):" \
	    $$(cd notebooks/params && ls *.yaml | sed 's/\.yaml$$//') >&2; exit 2; }
	@test -n "$$DATA_ROOT" || { echo "make reproduce: DATA_ROOT=<folder holding the datasets> is required (book/reproduce.md)" >&2; exit 2; }
	@test -d "$$DATA_ROOT" || { echo "make reproduce: DATA_ROOT='$$DATA_ROOT' is not a folder" >&2; exit 2; }
	@case "$$REPRO_JOBS" in ""|0|*[!0-9]*) echo "make reproduce: REPRO_JOBS='$$REPRO_JOBS': expected a positive number of chapters run at once" >&2; exit 2;; esac
	$(PY) -m isoclip.notebooks --check --params "$$PARAMS" --only $(REPRO_NOTEBOOKS) $(REPRO_SET)
	@$(MAKE) --no-print-directory "$(MATHJAX)"
	rm -rf -- "_build/reproduce-$$PARAMS"
	ISOCLIP_PARAMS="$$PARAMS" ISOCLIP_RESULTS="$$(realpath -m -- "$(RESULTS_DIR)")" $(PY) -m isoclip.notebooks --params "$$PARAMS" --out "_build/reproduce-$$PARAMS/executed" --only $(REPRO_NOTEBOOKS) --jobs "$$REPRO_JOBS" $(REPRO_SET)
	ISOCLIP_RESULTS="$$(realpath -m -- "$(RESULTS_DIR)")" $(PY) -m isoclip.notebooks --params "$$PARAMS" --out "_build/reproduce-$$PARAMS/executed" --only 20 --set "runs=['$$PARAMS']"
	$(PY) tools/reproduce_book.py "_build/reproduce-$$PARAMS" "$$PARAMS" "$$(cd -- "$$DATA_ROOT" && pwd)"
	$(VENV)/bin/jupyter-book build "_build/reproduce-$$PARAMS" -n -W --keep-going
	@echo "[reproduce] book: _build/reproduce-$$PARAMS/_build/html/index.html"

reproduce-fake: $(STAMP) ## CI: make reproduce on generated fake datasets with random-init ViT-B-32
	rm -rf -- "$(FAKE_DATA_ROOT)" "$(FAKE_RESULTS)"
	$(PY) -m isoclip.data.fakes "$(FAKE_DATA_ROOT)" --n-classes 4 --per-class 3 --image-size 32 \
	  $$($(PY) -c "from isoclip.notebooks import params_datasets as p; print(*p('fake-vit-b-32'))")
	$(MAKE) reproduce PARAMS=fake-vit-b-32 DATA_ROOT="$(FAKE_DATA_ROOT)" RESULTS_DIR="$(FAKE_RESULTS)" \
	  REPRO_JOBS=$(NOTEBOOK_JOBS)

check-book: $(STAMP) ## Open every page of the built book in headless Chromium
	$(PY) tools/check_book.py _build/html

benchmarks: $(STAMP) ## Run the benchmark scripts (print figures; the regime study: make regimes)
	for f in $(filter-out benchmarks/regime_study.py benchmarks/build_time.py,$(wildcard benchmarks/*.py)); do \
	  echo "== $$f"; $(PY) $$f || exit 1; done

build-time: $(STAMP) ## Time the build stages (venv, test, data, notebooks with the models, book) cold and warm
	$(PY) benchmarks/build_time.py

regimes: $(STAMP) ## Regime study of chapter 13 (17 tiny models, ~75 min on 2 cores from scratch)
	$(PY) benchmarks/regime_study.py

clean: ## Remove build products (keeps the model/feature cache)
	rm -rf _build executed api

clean-cache: ## Remove the isoclip cache (trained models, features)
	rm -rf $${ISOCLIP_CACHE:-$$HOME/.cache/isoclip}
