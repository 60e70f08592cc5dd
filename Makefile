# The two set-up commands of the README. Each works on an empty machine with Python 3.11+.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Install everything and start the TUI on the embedded local workspace.
run: $(STAMP)
	$(BIN)/genml-tui

## Install everything and run the whole test suite.
test: $(STAMP)
	command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux) || true
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

## The suite without training runs and real processes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

clean:
	rm -rf $(VENV) build *.egg-info
