"""Where the steps of the training and monitoring jobs run: in the run's own process, or on
Celery workers when the settings name a broker (LIFECYCLE_CELERY_BROKER).

Steps hand each other nothing but IO-manager values in the shared storage, so a step may run on
any worker that reaches the same PostgreSQL, object storage and MLflow server. In Kubernetes the
same jobs take `dagster_k8s.k8s_job_executor` instead (deploy/k8s/values-dagster.yaml).

Every executor here first tags its run with the host and pid of the process executing it (the
run worker): on a shared PostgreSQL instance nothing else tells which machine a daemon-launched
run lives on, and recovery (lifecycle_assets/recovery.py) ends a STARTED run only when it can
see that this process is gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.execution.retries import RetryMode

from lifecycle_assets.registry.owner import TAG_RUN_WORKER
from lifecycle_assets.settings import LifecycleSettings


class OwnedExecutor(dg.Executor):
    """`inner`, after tagging the run with the process that executes it."""

    def __init__(self, inner: dg.Executor) -> None:
        self.inner = inner

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        worker = {TAG_RUN_WORKER: f"{socket.gethostname()}:{os.getpid()}"}
        plan_context.instance.add_run_tags(plan_context.run_id, worker)
        yield from self.inner.execute(plan_context, execution_plan)

    def __getattr__(self, name: str) -> Any:
        # What an executor's own loop reads back from `plan_context.executor`, which is this
        # wrapper (Celery's loop calls `app_args()`).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def retries(self) -> RetryMode:
        return self.inner.retries

    @property
    def step_dependency_config(self) -> Any:
        return self.inner.step_dependency_config


class OwnedExecutorDefinition(dg.ExecutorDefinition):
    """What `owned` makes: a test asserts every job of the code location has one."""


def owned(executor: dg.ExecutorDefinition) -> OwnedExecutorDefinition:
    """`executor` with the same name, config and requirements, tagging each run's owner."""
    create = executor.executor_creation_fn
    assert create is not None, f"executor {executor.name} creates no executor"
    return OwnedExecutorDefinition(
        name=executor.name,
        config_schema=executor.config_schema,
        requirements=executor.get_requirements,
        executor_creation_fn=lambda init_context: OwnedExecutor(create(init_context)),
        description=executor.description,
    )


# The one-process executor of the cheap jobs (ingest, model card, operations, scorecard).
in_process_steps = owned(dg.in_process_executor)


def step_executor() -> dg.ExecutorDefinition:
    """The in-process executor by default; dagster-celery on the settings' broker and queue."""
    settings = LifecycleSettings.from_env()
    if not settings.celery_broker:
        return in_process_steps
    from dagster_celery import celery_executor

    return owned(
        celery_executor.configured(
            {
                # Read by every process that loads the job, so the broker URL (and its password)
                # stays in the environment, not in run config stored with each run.
                "broker": {"env": "LIFECYCLE_CELERY_BROKER"},
                "backend": "rpc://",
                "config_source": {"task_default_queue": settings.celery_queue},
            },
            name="celery",
        )
    )
