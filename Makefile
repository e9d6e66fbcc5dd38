# Consilium: one-command set-up on a fresh machine (no Docker needed).
#   make demo   venv + jars + Kafka/PostgreSQL/Redis, then replay CheXpert through the services
#   make test   venv + stack, then the whole test suite against the real servers
#               (tests/reliability included: 5 runs of each fault-injection scenario)
#   make reliability   only the fault-injection suite, 20 runs of each scenario (--long)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STACK  := deploy/local/stack.sh

.PHONY: demo test reliability lint check up down status schemas clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

up: $(BIN)/.installed
	$(STACK) up

down:
	$(STACK) down

status:
	$(STACK) status

demo: up
	$(BIN)/consilium demo

test: up
	$(BIN)/python -m pytest

# Private Kafka/PostgreSQL/Redis of its own (the stack's jars and binaries, hence `up`).
reliability: up
	$(BIN)/python -m pytest tests/reliability --long

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

schemas: $(BIN)/.installed
	$(BIN)/consilium schemas --out schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
