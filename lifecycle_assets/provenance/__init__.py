"""Provenance: trace a prediction back to its raw data, and export a version's lineage graph.

Plain functions over the stores the lifecycle already writes (prediction log, registry, ledger,
MLflow runs, the content-addressed lake); no Dagster import, so the CLI can audit anywhere.
`trace.trace_prediction` walks one prediction, `lineage.build_lineage` graphs one version, and
`links` names the vocabulary; nothing is imported here, so the CLI starts without MLflow.
"""
