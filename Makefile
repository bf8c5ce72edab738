# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEVSTACK_DIR ?= .devstack

.PHONY: demo test lint typecheck unit integration services tools clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# Debian packages, Kafka jars and Bugsink, each only when missing.
services: $(BIN)/.installed
	$(BIN)/obskit -v devstack install

# gitlab-ci-local (the tests run .gitlab-ci.yml's jobs with it; 4.70.0: later ones need Node 22) and
# rsync, which it copies a job's files with; each only when missing.
GITLAB_CI_LOCAL_VERSION := 4.70.0
OBSKIT_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/obskit
GITLAB_CI_LOCAL := $(OBSKIT_CACHE_DIR)/gitlab-ci-local/node_modules/.bin/gitlab-ci-local
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
tools:
	@command -v rsync >/dev/null || { $(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rsync; }
	@test "$$($(GITLAB_CI_LOCAL) --version 2>/dev/null)" = "$(GITLAB_CI_LOCAL_VERSION)" || { \
		command -v npm >/dev/null || { echo "make tools: npm not found: install Node.js 20 and npm" >&2; exit 1; }; \
		npm install --prefix $(OBSKIT_CACHE_DIR)/gitlab-ci-local --no-audit --no-fund --loglevel=error \
			gitlab-ci-local@$(GITLAB_CI_LOCAL_VERSION); }

demo: services
	$(BIN)/obskit demo --dir $(DEVSTACK_DIR) $(DEMO_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

# Every test, integration tests included (the fixtures start the services they use).
test: services tools lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

unit: $(BIN)/.installed
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

clean:
	-$(BIN)/obskit devstack down --dir $(DEVSTACK_DIR)
	rm -rf $(VENV) $(DEVSTACK_DIR) .mypy_cache .ruff_cache .pytest_cache
