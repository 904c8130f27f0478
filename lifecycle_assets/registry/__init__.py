"""Model registry operations: safe artifacts, registration, aliases. No Dagster imports."""
