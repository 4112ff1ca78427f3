# Set-up is two commands: `make test` and `make demo`. Each builds its own virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: test test-loaded lint demo bench clean mlagents test-windows

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

# The same suite while two busy loops take both cores, as on a busy CI machine: the check to
# run before trusting a green `make test`. The loops are ended by pid whatever the outcome;
# the exit code is the suite's.
test-loaded: lint
	@yes > /dev/null & one=$$!; yes > /dev/null & two=$$!; \
	trap 'kill $$one $$two 2>/dev/null' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	echo "busy loops: pids $$one $$two"; \
	$(BIN)/pytest $(PYTEST_ARGS)

# The tests_windows/ tier inside real Windows CPythons under Wine, 3.10 then 3.11 (installs
# wine with apt-get if needed; each Python is cached in ~/.cache/mlagents-grid-windows/<version>).
# One version: make test-windows WINDOWS_PYTHONS=3.10
WINDOWS_PYTHONS ?= 3.10 3.11
test-windows:
	WINDOWS_PYTHONS="$(WINDOWS_PYTHONS)" bash scripts/test-windows.sh $(PYTEST_ARGS)

# The real ML-Agents stack, in its own environment (.venv-mlagents, Python 3.11).
mlagents:
	bash scripts/setup-mlagents.sh

demo: $(BIN)/grid-plan mlagents
	$(BIN)/python scripts/demo.py

# GNU parallel is what the dispatch benchmark compares against: installed with apt-get where
# it can be (root on Debian); elsewhere its row is left out.
bench: $(BIN)/grid-plan
	@command -v parallel >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		apt-get install -y -q parallel >/dev/null 2>&1; } || \
		echo "bench: GNU parallel is not installed: its dispatch row is left out"
	cd bench && ../$(BIN)/python run_all.py

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .mypy_cache .ruff_cache
