"""The tags naming the process that owns a run, read by reconcile after a crash."""

# An MLflow run's (and an in-process Dagster run's, set by `lifecycle run` at its creation).
TAG_HOST = "lifecycle.host"
TAG_PID = "lifecycle.pid"
# A Dagster run's worker, `<host>:<pid>`, set by the run's executor when it starts executing
# (defs/executors.py). Not TAG_HOST: that one also says `lifecycle run` executed the run itself
# (run_submission.submitted_by), and a run the daemon launched was not.
TAG_RUN_WORKER = "lifecycle/run_worker"
