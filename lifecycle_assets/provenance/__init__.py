"""Provenance: trace a prediction back to its raw data, and export a version's lineage graph.

Plain functions over the stores the lifecycle already writes (prediction log, registry, ledger,
MLflow runs, the content-addressed lake); no Dagster import, so the CLI can audit anywhere.
"""

from lifecycle_assets.provenance.lineage import Lineage, build_lineage
from lifecycle_assets.provenance.links import Link, Trace
from lifecycle_assets.provenance.trace import trace_prediction

__all__ = ["Lineage", "Link", "Trace", "build_lineage", "trace_prediction"]
