# flownb — two commands do everything on a fresh machine:
#   make test    create .venv if absent, install, run every notebook (smoke preset) and pytest
#   make paper   create .venv if absent, install, regenerate the paper's tables and figures into figures/
#   make gpu-check   on a CUDA machine: check it and project the hours of the paper's tables (~8 min)
#                (PRESET=auto: paper preset on CUDA, cpu preset otherwise)
# Examples:  make paper NB=00_theory        make paper NB=05_glow_cifar EPS=8 PRESET=cpu
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PRESET ?= auto
# notebooks `make paper` runs, in order (override with NB=<name>)
PAPER_NBS ?= 00_theory 05_glow_cifar 06_glow_lsun 07_realnvp 08_adversarial_samples 09_stability 10_report
# executed copies of the notebooks land here (git-ignored)
RUN_DIR ?= runs/notebooks

# papermill parameters: PRESET always; the others only when given on the command line
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
# anything else, verbatim: PAPERMILL_ARGS="-p restarts 4"
PARAMS += $(PAPERMILL_ARGS)

NOTEBOOKS := $(if $(NB),$(basename $(notdir $(NB))),$(PAPER_NBS))

.PHONY: install test paper gpu-check clean-venv

$(BIN)/.installed: settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# one thread per notebook: nbdev_test runs notebooks in parallel, and the small smoke models gain nothing from more
test: install
	OMP_NUM_THREADS=1 FLOWNB_PRESET=smoke $(BIN)/nbdev_test --timing
	$(BIN)/python -m pytest tests/ -q

paper: install
	@$(BIN)/python -c 'import sys; from flownb.experiment import paper_plan; print(paper_plan(sys.argv[1], sys.argv[2:]))' $(PRESET) $(NOTEBOOKS)
	mkdir -p $(RUN_DIR)
	for nb in $(NOTEBOOKS); do \
	  $(BIN)/papermill nbs/$$nb.ipynb $(RUN_DIR)/$$nb.ipynb $(PARAMS) || exit 1; \
	done

# checks a GPU machine (placement, timings with each speed switch, projected hours of Tables 1-3); GPU_CHECK_ARGS=--dry-run on a CPU
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean-venv:
	rm -rf $(VENV)
