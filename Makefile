# flownb — two commands do everything on a fresh machine:
#   make test    create .venv if absent, install, run every notebook (smoke preset) and pytest; needs no dataset
#   make test-data   the tests that need the real data sets (FLOWNB_MIRROR=<the offline mirror> make test-data)
#   make paper   create .venv if absent, install, regenerate the paper's tables and figures into figures/
#   make gpu-check   on a CUDA machine: check it and project the hours of the paper's tables (~2 min on an H200)
#                (PRESET=auto: paper preset on CUDA, cpu preset otherwise)
#   make docs    the docs site in _docs/ (Quarto's nbdev_docs if installed, else mkdocs-material), checked in headless Chromium
#   make executed-library PRESET=cpu   run the library notebooks and keep their outputs in nbs/
# Examples:  make paper NB=00_theory        make paper NB=05_glow_cifar EPS=8 PRESET=cpu
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= auto
# notebooks `make paper` runs, in order (override with NB=<name>): the numbered notebooks at the top of nbs/
PAPER_NBS ?= $(sort $(basename $(notdir $(wildcard nbs/[0-9]*.ipynb))))
# executed copies of the notebooks land here (git-ignored)
RUN_DIR ?= runs/notebooks
# library notebooks `make executed-library` runs: those in the layer folders of nbs/, e.g. flows/04_models
LIBRARY_NBS ?= $(sort $(patsubst nbs/%.ipynb,%,$(wildcard nbs/*/*.ipynb)))
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)

# the notebook's parameters (papermill's -p/-r): PRESET always; the others only when given on the command line
PARAMS := -p preset $(PRESET)
ifdef EPS
PARAMS += -p eps $(EPS)
endif
ifdef SEED
PARAMS += -p seed $(SEED)
endif
ifdef ATTACK_STEPS
PARAMS += -p attack_steps $(ATTACK_STEPS)
endif
ifdef N_TEST
PARAMS += -p n_test $(N_TEST)
endif
ifdef DATASET
PARAMS += -r dataset $(DATASET)
endif
ifdef OUT_DIR
PARAMS += -r out_dir $(OUT_DIR)
endif
# any other parameter, as papermill takes it: PAPERMILL_ARGS="-p restarts 4 -r anomalies mnist"
PARAMS += $(PAPERMILL_ARGS)

NOTEBOOKS := $(if $(NB),$(basename $(notdir $(NB))),$(PAPER_NBS))

.PHONY: install test test-data paper gpu-check docs chromium executed-library clean-venv

$(BIN)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# one thread per notebook: nbdev_test runs notebooks in parallel, and the small smoke models gain nothing from more.
# nbdev_test runs the library notebooks and the report; the experiment notebooks run once each under pytest, with the
# parameters and checks of tests/test_newcomer.py, test_experiments.py, test_notebooks.py and test_docs.py
empty :=
EXPERIMENT_NBS_RE := ^[_.]|^($(subst $(empty) $(empty),|,$(filter-out 10_report,$(PAPER_NBS))))\.ipynb$$
test: install
	OMP_NUM_THREADS=1 FLOWNB_PRESET=smoke $(BIN)/nbdev_test --timing --skip_file_re '$(EXPERIMENT_NBS_RE)'
	$(BIN)/python -m pytest tests/ -q

# the tests that need CIFAR-10, CelebA and MNIST: the data notebook against the real mirror (checksums, every archive
# unpacked and read), then the experiments on the real data (pytest marker `data`, left out of `make test`)
test-data: install
	@test -n "$$FLOWNB_MIRROR" || { echo "make test-data needs the real data: set FLOWNB_MIRROR to the offline mirror (data/README.md)"; exit 2; }
	OMP_NUM_THREADS=1 FLOWNB_PRESET=smoke $(BIN)/nbdev_test --path nbs/data
	$(BIN)/python -m pytest tests/ -q -m data

# each notebook runs with papermill through flownb-run (a failed cell is said in one line, last), without MPLBACKEND (the
# kernel's inline backend puts the figures into the executed notebooks); each executed notebook goes back over its
# source in nbs/ only when its results went to figures/ (flownb.tools.executed)
paper: install
	@$(BIN)/python -c 'import sys; from flownb.experiments.registry import paper_plan; print(paper_plan(sys.argv[1], sys.argv[2:]))' $(PRESET) $(NOTEBOOKS)
	mkdir -p $(RUN_DIR)
	for nb in $(NOTEBOOKS); do \
	  env -u MPLBACKEND $(BIN)/flownb-run nbs/$$nb.ipynb $(RUN_DIR)/$$nb.ipynb $(PARAMS) || exit 1; \
	  $(BIN)/python -m flownb.tools.executed $(RUN_DIR)/$$nb.ipynb nbs/$$nb.ipynb || exit 1; \
	done

# the library notebooks with their outputs, run as nbdev_test runs them (IN_TEST=1: what they write goes to a scratch
# folder, never figures/ or runs/) at PRESET; each executed copy replaces its source in nbs/ unless PRESET is smoke
executed-library: install
	for nb in $(LIBRARY_NBS); do \
	  mkdir -p $(RUN_DIR)/library/$$(dirname $$nb); \
	  env -u MPLBACKEND IN_TEST=1 FLOWNB_PRESET=$(PRESET) $(BIN)/papermill --cwd nbs/$$(dirname $$nb) nbs/$$nb.ipynb $(RUN_DIR)/library/$$nb.ipynb || exit 1; \
	  $(BIN)/python -m flownb.tools.executed $(RUN_DIR)/library/$$nb.ipynb nbs/$$nb.ipynb --preset $(PRESET) || exit 1; \
	done

# headless Chromium for the docs check: installed with apt-get when absent and run as root (~20 s on Debian 12)
chromium:
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	      || echo "could not install Chromium (apt-get failed): the browser checks will skip"; \
	  else echo "no Chromium, and not root: install it (apt-get install chromium) or set CHROMIUM=/path/to/chrome"; fi; \
	fi

# the docs site in _docs/: nbdev_docs (Quarto) where quarto is installed, else every notebook of nbs/ built by mkdocs-material
# and mkdocs-jupyter (flownb.tools.docs_site; MathJax from the jupyter-server-mathjax package `install` puts in the venv),
# then served locally and each page read in headless Chromium (flownb.tools.docs_check): equations typeset, images
# loaded, no request off the site, navigation complete, search answering
docs: install chromium
	if command -v quarto >/dev/null; then $(BIN)/nbdev_docs; \
	else $(BIN)/python -m flownb.tools.docs_check --out _docs --check; fi

# checks a GPU machine (placement, timings with each speed switch, projected hours of Tables 1-3); GPU_CHECK_ARGS=--dry-run on a CPU
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
