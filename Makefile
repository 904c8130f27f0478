# The two commands a new user needs are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

export LIFECYCLE_HOME ?= $(CURDIR)/.lifecycle
# Dagster reads dagster.yaml only from DAGSTER_HOME, so the project's copy is placed there.
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export BENTOML_HOME ?= $(LIFECYCLE_HOME)/bentoml
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR ?= false
export GIT_PYTHON_REFRESH ?= quiet
MLFLOW_DB := sqlite:///$(LIFECYCLE_HOME)/mlflow.db

.PHONY: install run test lint dev serve mlflow-ui bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: Python 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/pip check
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml  ## the whole lifecycle on the built-in data
	$(BIN)/lifecycle run

test: install  ## the test suite (what CI runs)
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

dev: install $(DAGSTER_HOME)/dagster.yaml  ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

serve: install  ## every model's champion over HTTP on http://127.0.0.1:3001
	$(BIN)/bentoml serve . --host 127.0.0.1 --port 3001

mlflow-ui: install  ## MLflow runs and registry on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_DB) --host 127.0.0.1 --port 5000

bench: install  ## serving (wrk on pinned cores), CLI latency, lifecycle at three sizes; targets pass/fail
	command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y wrk || sudo apt-get install -y wrk; }
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/cli.py
	[ ! -f benchmarks/lifecycle.py ] || $(BIN)/python benchmarks/lifecycle.py

clean:
	rm -rf .lifecycle .dagster_home
