# Consilium: one-command set-up on a fresh machine (no Docker needed).
#   make demo   venv + jars + Kafka/PostgreSQL/Redis, then replay CheXpert through the services
#   make test   venv + stack, then the whole test suite against the real servers
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STACK  := deploy/local/stack.sh

.PHONY: demo test lint check up down status schemas clean

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

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test

schemas: $(BIN)/.installed
	$(BIN)/consilium schemas --out schemas

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
