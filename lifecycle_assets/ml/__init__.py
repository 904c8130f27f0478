"""Dagster-free ML logic: features, schemas, training, metrics, gates. Plain typed functions."""
