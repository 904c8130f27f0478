"""The tags naming the process that owns an MLflow run, read by reconcile after a crash."""

TAG_HOST = "lifecycle.host"
TAG_PID = "lifecycle.pid"
