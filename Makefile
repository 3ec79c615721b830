# Two entry points for a fresh machine (see README.md):
#   make demo   set up, then anonymise + evaluate the embedded demo faces (no download) and print tables
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= results/runs

.PHONY: setup demo test lint clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-nodeps.txt requirements-ray.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet "pip>=23"
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet -r requirements-ray.txt  # optional extra [ray]; the suite tests the Ray executor
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

demo: setup
	$(BIN)/bench run --method identity --dataset demo --out $(DEMO) --quiet
	$(BIN)/bench run --method pixelate --dataset demo --out $(DEMO) --quiet
	$(BIN)/bench run --method blur --dataset demo --out $(DEMO)
	@echo
	$(BIN)/bench table $(DEMO)/demo --layout summary --format latex
	@echo "all numbers: $(BIN)/bench table $(DEMO)/demo --layout auto --ci"

test: setup
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure" >&2; fi; exit $$rc

lint: setup
	$(BIN)/python -m ruff check bench tests

clean-venv:
	rm -rf $(VENV)
