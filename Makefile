# Two commands on a fresh machine (see README):
#   make study   - set up .venv and run the full paper study locally (CHGNet, embedded launchpad)
#   make test    - set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pqdflow-installed
OUT    ?= runs/paper

.PHONY: setup setup-gpaw study test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# pinned torch first: the local CPU build; an unpinned torch pulls GBs of CUDA wheels
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[ml,dev]"
	touch $(STAMP)

setup: $(STAMP)

# GPAW (PBE/PAW DFT) with Debian's PAW setups; plain `pip install gpaw` fails here (see script)
setup-gpaw: $(STAMP)
	bash .ci/install_gpaw.sh $(VENV)

study: $(STAMP)
	$(BIN)/pqdflow run --example --backend chgnet --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src structures workflows analysis tests benchmarks
	$(BIN)/ruff format --check src structures workflows analysis tests benchmarks

# mypy needs the installed namespace (pqdflow.structures, ...): mirror it with symlinks
typecheck: $(STAMP)
	rm -rf build/typecheck && mkdir -p build/typecheck/pqdflow
	for f in src/pqdflow/*; do ln -s "$(CURDIR)/$$f" build/typecheck/pqdflow/; done
	for p in structures workflows analysis; do ln -s "$(CURDIR)/$$p" build/typecheck/pqdflow/$$p; done
	MYPYPATH=build/typecheck $(BIN)/mypy -p pqdflow

clean:
	rm -rf $(VENV) build *.egg-info
