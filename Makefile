# voicefleet: `make run` starts the whole system, `make test` runs the tests.
# Both create .venv and install the project (with its dev extra) when missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint proto bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The browser's LiveKit mode needs livekit-client from npm (vendored, served locally).
install: $(STAMP)
	src/client/web/vendor.sh

run: install
	$(BIN)/voicefleet up

test: install
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

proto: $(STAMP)
	$(BIN)/python -m voicefleet.rpc.codegen

bench: $(STAMP)
	$(BIN)/python bench/worker.py
