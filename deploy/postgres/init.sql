-- Dagster's storage gets a database of its own; MLflow and the alias ledger share `lifecycle`.
CREATE DATABASE dagster OWNER lifecycle;
