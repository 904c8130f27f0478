"""lifecycle-assets: the ML model lifecycle as Dagster assets, in MLflow, served by BentoML."""
