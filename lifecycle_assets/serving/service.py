"""The BentoML service: every configured model's champion, each under its own route.

- `POST /models/<name>/predict` and `GET /models/<name>/metadata` for each model;
- `POST /predict` and `GET /metadata` for the default (first) model, so a one-model project
  keeps its plain URLs; `GET /models` lists what is served; `GET /openapi.json` describes it all
  (`openapi.py`).

BentoML runs the process (worker, `/livez`, `/readyz`, `/metrics`, the Bento); the
endpoints are a small Starlette app mounted into it. Measured on this machine with an empty
handler, BentoML's typed `@bentoml.api` path (pydantic IO descriptors, a hop to a one-thread pool
for sync methods) added 0.45-0.65 ms per request over a mounted route and cut throughput at
concurrency 64 from about 1,060 to 590 req/s. The rest of BentoML's per-request cost is its
middleware (an OpenTelemetry span even with sampling off, the access log, a timeout task, its
request context): 2.3 of 3.4 ms of CPU per single-record request in-process, so the two predict
routes are answered ahead of it (`fast_path.py`, BentoML's request metrics kept) and every other
route goes through it. Requests are parsed once by the spec-driven validator of the
model they name, then scored by that model's `Predictor` (`predictor.py`). In registry mode each
model follows its own aliases; a Bento serves the models it was built with and never swaps.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import bentoml
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.serving import admin, head_limit, registry_hooks, startup
from lifecycle_assets.serving.fast_path import answer, query_refusal
from lifecycle_assets.serving.http_guard import HttpGuard, not_json
from lifecycle_assets.serving.model_env import ModelSourceError
from lifecycle_assets.serving.openapi import openapi_document
from lifecycle_assets.serving.requests import error_body, shown
from lifecycle_assets.settings import SettingsRefused, load_env_file

if TYPE_CHECKING:
    from lifecycle_assets.serving.model_source import ServedModel
    from lifecycle_assets.serving.predictor import Predictor

logger = logging.getLogger(__name__)

# In the `bentoml serve` process (the supervisor): check the configuration before any worker
# starts, and exit with one line on a fatal error from a worker (see startup.py).
startup.supervise()
# In a worker: uvicorn, started after this import, reads request heads through a bounded
# protocol (`head_limit.py`); BentoML passes no HTTP option to uvicorn.
head_limit.install()

ENV_POLL_SECONDS = "LIFECYCLE_REGISTRY_POLL_SECONDS"
ENV_SHADOW_BUDGET_MS = "LIFECYCLE_SHADOW_BUDGET_MS"


def _service() -> PredictionService:
    return bentoml.get_current_service()


def _not_served(name: str) -> Response:
    service = _service()
    served = sorted(service.predictors)
    if (why := getattr(service, "lost", {}).get(name)) is not None:
        # A model of the project whose champion the registry lost: why, and what to run.
        return JSONResponse(error_body(f"model {name!r} is not served: {why}"), status_code=503)
    return JSONResponse(
        error_body(f"model {shown(name)!r} is not served here; served models: {served}"),
        status_code=404,
    )


async def _predict(predictor: Predictor, request: Request) -> Response:
    """The Starlette route; the same requests normally take `fast_path.FastPredict`."""
    if query := request.scope.get("query_string"):
        return JSONResponse(query_refusal(predictor, query), status_code=400)
    if (
        refused := not_json(request.headers.get("content-type", "").encode("latin-1") or None)
    ) is not None:
        predictor.metrics.rejected.labels(predictor.spec.name, "415").inc()
        return JSONResponse(refused, status_code=415)
    status, payload = await answer(predictor, await request.body())
    return JSONResponse(payload, status_code=status)


def _metadata(predictor: Predictor, request: Request) -> Response:
    # `/metadata?model=b` would describe the default model to a client who asked for b.
    if (refused := admin.refused_params(request)) is not None:
        return refused
    predictor.refresh_drift()
    service = _service()
    lost = getattr(service, "lost", {})
    body = {**predictor.metadata(), "models": sorted(service.predictors)}
    return JSONResponse({**body, "not_served": dict(lost)} if lost else body)


async def predict_endpoint(request: Request) -> Response:
    return await _predict(_service().default_predictor, request)


async def metadata_endpoint(request: Request) -> Response:
    return _metadata(_service().default_predictor, request)


async def model_predict_endpoint(request: Request) -> Response:
    name = request.path_params["name"]
    predictor = _service().predictors.get(name)
    return _not_served(name) if predictor is None else await _predict(predictor, request)


async def model_metadata_endpoint(request: Request) -> Response:
    name = request.path_params["name"]
    predictor = _service().predictors.get(name)
    return _not_served(name) if predictor is None else _metadata(predictor, request)


async def openapi_endpoint(_: Request) -> Response:
    service = _service()
    specs = {name: predictor.spec for name, predictor in service.predictors.items()}
    limit = service.default_predictor.max_rows
    return JSONResponse(openapi_document(specs, service.default_model, limit))


async def models_endpoint(_: Request) -> Response:
    service = _service()
    return JSONResponse(
        {
            "default": service.default_model,
            "models": {
                name: {
                    "task": predictor.spec.task,
                    "version": predictor.served.ref.version,
                    "predict": f"/models/{name}/predict",
                    "metadata": f"/models/{name}/metadata",
                }
                for name, predictor in sorted(service.predictors.items())
            },
        }
    )


async def http_error(_: Request, error: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) as JSON, like ours."""
    status = getattr(error, "status_code", 500)
    headers = getattr(error, "headers", None)
    detail = getattr(error, "detail", "error")
    return JSONResponse(error_body(str(detail)), status_code=status, headers=headers)


http_app = Starlette(
    exception_handlers={HTTPException: http_error},
    routes=[
        Route("/predict", predict_endpoint, methods=["POST"]),
        Route("/metadata", metadata_endpoint, methods=["GET"]),
        Route("/models", models_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/models/{name}/predict", model_predict_endpoint, methods=["POST"]),
        Route("/models/{name}/metadata", model_metadata_endpoint, methods=["GET"]),
        Route("/admin/reload", admin.reload_endpoint, methods=["POST"]),
        Route("/admin/status", admin.status_endpoint, methods=["GET"]),
        Route(registry_hooks.PATH, registry_hooks.registry_hook_endpoint, methods=["POST"]),
    ],
)


@bentoml.service(
    name="lifecycle_model",
    http={"host": "127.0.0.1"},
    traffic={"timeout": 30},
    # One worker: coalescing already keeps the model busy. Measured with 2 workers on this 2-CPU
    # machine: 17-55 req/s at concurrency 16-64 with multi-second p99 (OpenMP threads of two
    # processes fighting over the cores), against 240-730 req/s with one.
    workers=1,
)
@bentoml.asgi_app(http_app, path="/")
class PredictionService:
    """Loads and verifies every model once per worker, before the worker reports ready."""

    def __init__(self) -> None:
        startup.watch_parent()
        try:
            self._start()
        except (ModelSourceError, SettingsRefused) as error:
            startup.report_fatal(str(error))
        except Exception as error:
            # Restarting would fail the same way: one line to the operator, the trace to the log.
            logger.exception("the service failed to start")
            startup.report_fatal(f"start-up failed: {type(error).__name__}: {error}")

    def _start(self) -> None:
        # Here, not at module import: the `bentoml serve` supervisor imports this module too.
        # A worker serving compiled models from a SQLite registry and local artifacts imports
        # none of MLflow, scikit-learn or skops (seconds of start-up each; `in_place.py`).
        from lifecycle_assets.serving.model_source import awaited_models, load_served_models

        load_env_file()  # `.env` reaches MLflow and boto3 as it reaches the CLI
        self.settings = Settings.from_env()
        env = os.environ
        self.admin_token = env.get(admin.ENV_ADMIN_TOKEN) or None
        self.failed_tokens = admin.FailedTokens(self.settings.admin_max_failures)
        head_limit.HeadLimitedProtocol.connections.per_client = (
            self.settings.max_connections_per_client
        )
        self.shadow_budget = float(env.get(ENV_SHADOW_BUDGET_MS) or config.SHADOW_BUDGET_MS)
        self.poll_seconds = float(env.get(ENV_POLL_SECONDS) or config.REGISTRY_POLL_SECONDS)
        self.predictors: dict[str, Predictor] = {}
        # Models not served because the registry lost the ledger's champion: name -> why.
        self.lost: dict[str, str] = {}
        for served in load_served_models(lost=self.lost):
            self._serve(served)
        self.default_model = next(iter(self.predictors))
        self.awaited = awaited_models(list(self.predictors))
        if self.awaited:
            threading.Thread(target=self._await_champions, name="champions", daemon=True).start()
        # The modules, models and registry state loaded so far live as long as the worker: out
        # of the collector's sight, a full collection no longer walks them while requests wait.
        gc.freeze()

    @bentoml.on_shutdown
    def close_prediction_logs(self) -> None:
        """Close every model's prediction log; in team mode ship what is left to the shared
        storage (a worker ends without running `atexit`)."""
        for predictor in getattr(self, "predictors", {}).values():
            predictor.log.close()

    @property
    def default_predictor(self) -> Predictor:
        return self.predictors[self.default_model]

    def _serve(self, served: ServedModel) -> None:
        """Start answering for a verified model (and following its aliases, from a registry)."""
        from lifecycle_assets.registry.ledger import Ledger
        from lifecycle_assets.serving.in_place import registry_reader
        from lifecycle_assets.serving.predictor import Predictor
        from lifecycle_assets.serving.watcher import RegistryWatcher

        predictor = Predictor(served, self.settings, shadow_budget_ms=self.shadow_budget)
        if served.source == "registry":
            predictor.watcher = RegistryWatcher(
                functools.partial(registry_reader, self.settings),
                served.ref.name,
                current=functools.partial(getattr, predictor, "models"),
                publish=functools.partial(setattr, predictor, "models"),
                metrics=predictor.metrics,
                poll_seconds=self.poll_seconds,
                ledger=Ledger.for_settings(self.settings),
            )
            predictor.watcher.start()
        predictor.drift.follow()
        # One dict store: requests find the model from the next one on.
        self.predictors[served.ref.name] = predictor
        logger.info(
            "serving %s version %s from %s (pid %d)",
            served.ref.name,
            served.ref.version,
            served.source,
            os.getpid(),
        )

    def _await_champions(self) -> None:
        """Models of the project that had no champion at start-up join once one is promoted.

        Same bar as a swap: promoted in the ledger, SHA-256 verified and a smoke prediction
        answered; a version that fails is logged once and not retried until the alias moves.
        """
        from lifecycle_assets.registry.ledger import Ledger
        from lifecycle_assets.serving.fallback import PromotionPending, verify_promoted
        from lifecycle_assets.serving.in_place import registry_reader
        from lifecycle_assets.serving.model_set import smoke_test

        ledger = Ledger.for_settings(self.settings)
        refused: dict[str, str] = {}
        while self.awaited:
            time.sleep(self.poll_seconds)
            for name in list(self.awaited):
                ref = None
                try:
                    ref = registry_reader(self.settings).resolve(name, config.CHAMPION_ALIAS)
                    if ref is None or refused.get(name) == ref.version:
                        continue
                    served = verify_promoted(ref, config.CHAMPION_ALIAS, ledger)
                    smoke_test(served, served.loaded.spec)
                except PromotionPending:
                    continue  # its ledger entry is being committed: the next round
                except Exception:
                    logger.exception("cannot serve %s yet", name)
                    if ref is not None:
                        refused[name] = ref.version
                    continue
                self._serve(served)
                self.awaited.remove(name)
                self.lost.pop(name, None)


# Outermost of our own layers: body bound, relative redirects, /readyz detail.
PredictionService.add_asgi_middleware(HttpGuard)
