PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install shell clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Options for `rollguard up`: make demo ARGS="--duration 300 --no-browser"
demo: $(STAMP)
	$(BIN)/rollguard up $(ARGS)

# A subshell with the virtual environment active, so that `rollguard ...` works as written.
shell: $(STAMP)
	@echo "rollguard is on the PATH in this shell; exit to leave it"
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(BIN):$$PATH" $${SHELL:-/bin/sh}

# Two pytest-xdist workers, a test file each at a time: most tests wait on servers they start.
# Override for one file: make test PYTEST_ARGS="tests/flags -x"
PYTEST_ARGS ?= -n 2 --dist loadfile
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) var .pytest_cache
