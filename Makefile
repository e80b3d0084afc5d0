# Common commands. `make demo` and `make test` are the README's two commands: each installs what it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo airflow test test-fast lint format up down status env bench docs

install: $(STAMP)

$(STAMP): requirements/constraints.txt pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $(STAMP)

demo: install
	$(PY) -m sentiflow.localstack.demo

# The Airflow UI (airflow standalone) on the local stack; prints URL and admin password. SCHEDULE=1: run schedules too.
airflow: install
	$(PY) -m sentiflow.localstack.airflow_standalone up $(if $(SCHEDULE),--schedule,)

test: install
	bash scripts/test.sh

# The unit tests only (tests/unit): in process, no service, no training (tests/unit/conftest.py refuses the
# service fixtures).
test-fast: install
	$(PY) -m pytest tests/unit -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy
	$(VENV)/bin/mypy --no-explicit-package-bases --allow-untyped-defs --cache-dir .mypy_cache/benchmarks benchmarks/*.py

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

up: install
	$(PY) -m sentiflow.localstack.stack up

down:
	$(PY) -m sentiflow.localstack.airflow_standalone down
	$(PY) -m sentiflow.localstack.stack down

status:
	$(PY) -m sentiflow.localstack.stack status

env:
	@$(PY) -m sentiflow.localstack.stack env

bench: install
	$(PY) benchmarks/clean_throughput.py

docs: install
	$(PY) scripts/update_readme.py
