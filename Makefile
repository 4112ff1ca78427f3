# Set-up is two commands: `make test` and `make demo`. Each builds its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: test lint demo bench clean mlagents test-windows

$(BIN)/grid-plan: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

lint: $(BIN)/grid-plan
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The tests_windows/ tier inside a real Windows CPython under Wine (installs wine with apt-get
# if needed; the Windows Python is cached in ~/.cache/mlagents-grid-windows).
test-windows:
	bash scripts/test-windows.sh $(PYTEST_ARGS)

# The real ML-Agents stack, in its own environment (.venv-mlagents, Python 3.11).
mlagents:
	bash scripts/setup-mlagents.sh

demo: $(BIN)/grid-plan mlagents
	$(BIN)/python scripts/demo.py

bench: $(BIN)/grid-plan
	cd bench && ../$(BIN)/python run_all.py

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache
