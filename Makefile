# Two commands on a fresh machine (see README):
#   make study   - set up .venv and run the full paper study locally (CHGNet, embedded launchpad)
#   make test    - set up .venv and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.pqdflow-installed
GPAW_STAMP := $(VENV)/.gpaw-installed
OUT    ?= runs/paper

.PHONY: setup setup-gpaw study test lint typecheck docs pkgtree clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# pinned torch first: the local CPU build; an unpinned torch pulls GBs of CUDA wheels
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[ml,dev]"
	touch $(STAMP)

setup: $(STAMP)

# GPAW (real PBE/PAW DFT) needs Debian packages and a configured build: see .ci/install_gpaw.sh
setup-gpaw: $(STAMP)
	bash .ci/install_gpaw.sh $(VENV)
	touch $(GPAW_STAMP)

# the test command installs GPAW too; where it cannot (no apt), the gpaw tests skip with a reason
$(GPAW_STAMP): $(STAMP)
	bash .ci/install_gpaw.sh $(VENV) && touch $@ || echo "make: GPAW not installed; the gpaw tests will skip" >&2

study: $(STAMP)
	$(BIN)/pqdflow run --example --backend chgnet --out $(OUT)

# the fast suite, then the API documentation (warnings are errors): CI runs both
test: $(STAMP) $(GPAW_STAMP)
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory docs

lint: $(STAMP)
	$(BIN)/ruff check src structures workflows analysis tests benchmarks
	$(BIN)/ruff format --check src structures workflows analysis tests benchmarks

# mypy and mkdocstrings need the installed namespace (pqdflow.structures, ...) as folders:
# mirror it with symlinks in build/pkgtree
pkgtree:
	rm -rf build/pkgtree && mkdir -p build/pkgtree/pqdflow
	for f in src/pqdflow/*; do ln -s "$(CURDIR)/$$f" build/pkgtree/pqdflow/; done
	for p in structures workflows analysis; do ln -s "$(CURDIR)/$$p" build/pkgtree/pqdflow/$$p; done

typecheck: $(STAMP) pkgtree
	MYPYPATH=build/pkgtree $(BIN)/mypy -p pqdflow

# API documentation from the docstrings (mkdocs + mkdocstrings), warnings as errors
docs: $(STAMP) pkgtree
	$(BIN)/mkdocs build --strict --quiet
	@echo "API documentation: build/site/index.html"

clean:
	rm -rf $(VENV) build *.egg-info
