# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEVSTACK_DIR ?= .devstack

.PHONY: demo test lint typecheck unit integration services clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages, Kafka jars and Bugsink, each only when missing.
services: $(BIN)/.installed
	$(BIN)/obskit -v devstack install

demo: services
	$(BIN)/obskit demo --dir $(DEVSTACK_DIR) $(DEMO_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# Every test, integration tests included (the fixtures start the services they use).
test: services lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

clean:
	-$(BIN)/obskit devstack down --dir $(DEVSTACK_DIR)
	rm -rf $(VENV) $(DEVSTACK_DIR) .mypy_cache .ruff_cache .pytest_cache
