"""Where the steps of the training and monitoring jobs run: in the run's own process, or on
Celery workers when the settings name a broker (LIFECYCLE_CELERY_BROKER).

Steps hand each other nothing but IO-manager values in the shared storage, so a step may run on
any worker that reaches the same PostgreSQL, object storage and MLflow server. In Kubernetes the
same jobs take `dagster_k8s.k8s_job_executor` instead (deploy/k8s/values-dagster.yaml).
"""

from __future__ import annotations

import dagster as dg

from lifecycle_assets.settings import LifecycleSettings


def step_executor() -> dg.ExecutorDefinition:
    """The in-process executor by default; dagster-celery on the settings' broker and queue."""
    settings = LifecycleSettings.from_env()
    if not settings.celery_broker:
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            # Read by every process that loads the job, so the broker URL (and its password)
            # stays in the environment, not in run config stored with each run.
            "broker": {"env": "LIFECYCLE_CELERY_BROKER"},
            "backend": "rpc://",
            "config_source": {"task_default_queue": settings.celery_queue},
        },
        name="celery",
    )
