# Two entry points for a fresh machine (see README.md):
#   make demo   set up, then anonymise + evaluate the embedded demo faces with identity, pixelate, ours and blur
#               (no download), print tables, write a report
#   make test   set up, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= results/runs
REPORT ?= results/report/demo

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
	$(BIN)/bench run --method identity --dataset demo --out $(DEMO) --save-images --quiet
	$(BIN)/bench run --method pixelate --dataset demo --out $(DEMO) --save-images --quiet
	$(BIN)/bench run --method ours --dataset demo --out $(DEMO) --save-images --quiet  # the paper's method
	$(BIN)/bench run --method blur --dataset demo --out $(DEMO) --save-images
	@echo
	$(BIN)/bench table $(DEMO)/demo --layout summary --format latex
	@echo "all numbers: $(BIN)/bench table $(DEMO)/demo --layout auto --ci"
	@echo
	$(BIN)/bench report $(DEMO)/demo -o $(REPORT) --title "bench demo report"
	@echo "demo report: $(abspath $(REPORT))/index.html (open it in a browser; it needs no network)"

# The suite runs on TEST_WORKERS processes (pytest-xdist; each test keeps one intra-op thread, tests/conftest.py):
# 2 = the cores of the CI machine. TEST_WORKERS=0 runs it in this process (for pdb).
TEST_WORKERS ?= 2
test: setup
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure" >&2; fi; exit $$rc

lint: setup
	$(BIN)/python -m ruff check bench tests benchmarks

clean-venv:
	rm -rf $(VENV)
