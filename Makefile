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

.PHONY: install run test lint dev serve mlflow-ui bench bench-team clean \
	team-dagster-home mlflow-server celery-worker team-dev test-team mlflow-schema \
	dagster-schema

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

test: install  ## the test suite without servers (team-mode tests: make test-team)
	$(BIN)/python -m pytest -m "not team"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

dev: install $(DAGSTER_HOME)/dagster.yaml  ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The host to bind is a setting (LIFECYCLE_SERVICE_HOST, default 127.0.0.1).
LIFECYCLE_SERVICE_HOST ?= 127.0.0.1
serve: install  ## every model's champion over HTTP on http://$LIFECYCLE_SERVICE_HOST:3001
	$(BIN)/bentoml serve . --host $(LIFECYCLE_SERVICE_HOST) --port 3001

mlflow-ui: install  ## MLflow runs and registry on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_DB) --host 127.0.0.1 --port 5000

bench: install  ## serving (wrk on pinned cores), CLI latency, lifecycle at three sizes; targets pass/fail
	command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y wrk || sudo apt-get install -y wrk; }
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/cli.py
	[ ! -f benchmarks/lifecycle.py ] || $(BIN)/python benchmarks/lifecycle.py

# After an MLflow upgrade: the schema a new SQLite store is created from (test_mlflow_schema
# fails until it is regenerated).
mlflow-schema: install  ## rewrite lifecycle_assets/registry/mlflow_schema.sql from the installed MLflow
	$(BIN)/python -m lifecycle_assets.registry.mlflow_schema

# After a Dagster upgrade: the schemas a new home's databases are created from
# (test_dagster_storage fails until they are regenerated).
dagster-schema: install  ## rewrite lifecycle_assets/dagster_schemas/*.sql from the installed Dagster
	$(BIN)/python -m lifecycle_assets.dagster_schema

bench-team: install  ## team mode (PostgreSQL, moto S3, MLflow server) against embedded, same data
	$(BIN)/python benchmarks/team.py

# ---- Team mode (README "Team mode"): needs PostgreSQL, object storage and a Celery broker. ----
# Every target reads the same variables as the code (.env.example, team section).
TEAM_DAGSTER_HOME ?= $(CURDIR)/.dagster_home_team
team-dagster-home:
	mkdir -p $(TEAM_DAGSTER_HOME)
	cp deploy/dagster/dagster.yaml $(TEAM_DAGSTER_HOME)/dagster.yaml

mlflow-server: install  ## MLflow server on DATABASE_URL, artifacts in LIFECYCLE_STORAGE_URL
	$(BIN)/lifecycle mlflow-server --port 5000

celery-worker: install team-dagster-home  ## a Celery worker for the Dagster steps
	PATH=$(CURDIR)/$(BIN):$$PATH DAGSTER_HOME=$(TEAM_DAGSTER_HOME) \
	  $(BIN)/dagster-celery worker start -A dagster_celery.app -y deploy/dagster/celery.yaml \
	  -q $${LIFECYCLE_CELERY_QUEUE:-dagster}

team-dev: install team-dagster-home  ## Dagster webserver + daemon on the team instance
	DAGSTER_HOME=$(TEAM_DAGSTER_HOME) $(BIN)/dagster dev -w workspace.yaml \
	  -h $(LIFECYCLE_SERVICE_HOST) -p 3000

test-team: install  ## the team-mode tests (real PostgreSQL, RabbitMQ; they start moto, MLflow)
	$(BIN)/python -m pytest -m team

clean:
	rm -rf .lifecycle .dagster_home .dagster_home_team
