# The two set-up commands of the README. Each works on an empty machine with Python 3.11+.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast check install bench clean cloud-check

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
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

## The static checks alone (what `make test` runs before pytest): layers, lint, types.
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/mypy

## The suite without training runs and real processes.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow'

## Opt-in and billable (about $0.10-0.25): one real Vertex AI round trip on a profile
## (tiny training, deploy, one prediction, then everything deleted). Prints the expected
## cost first; skipped without credentials; never run by CI. PROFILE=name YES=1 to not ask.
PROFILE ?= vertex
cloud-check: $(STAMP)
	$(BIN)/genml --backend $(PROFILE) vertex smoke $(if $(YES),--yes,)

clean:
	rm -rf $(VENV) build *.egg-info
