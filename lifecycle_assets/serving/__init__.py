"""The BentoML service and its helpers: request validation, model loading, Bento export.

No Dagster import anywhere in this package: the service must start from a Bento alone.
"""
