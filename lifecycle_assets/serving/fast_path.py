"""The hot routes, `POST /predict` and `POST /models/<name>/predict`, ahead of BentoML's layers.

Measured in-process (event-loop CPU per single-record request through the whole ASGI stack, the
shared 2-core machine under load): 3.1 ms before, 1.1 ms with this and the lazy frame, against
0.49 ms for a bare Starlette app serving the same compiled model. BentoML's per-request layers
(an OpenTelemetry span even with tracing off, the access log, a task and a timer for its
timeout, its request context, a second Starlette router for the mounted app) cost several times
what validating and scoring one record costs. `FastPredict` answers the two predict
routes itself, in front of that stack, and passes every other request (metadata, admin,
`/metrics`, `/readyz`, errors, unknown paths) to BentoML unchanged.

What the hot routes keep: the body bound and its 413 (`http_guard.read_body`), the same parsing,
4xx answers and prediction path (`answer`, shared with the Starlette routes), the prediction
log and prediction metrics (the predictor), and BentoML's own request metrics, written to
BentoML's own metric objects with the same labels (`request_total`, `request_duration_seconds`,
`request_in_progress`, `last_request_timestamp_seconds`). What they skip: OpenTelemetry spans
(when tracing is configured with a sample rate above zero the fast path is not installed, so
traces stay whole), BentoML's access-log line (the prediction log holds one row per answer) and
its request timeout (scoring runs on the event loop, which a timer could not interrupt anyway).
Answers are the bytes and headers Starlette's `JSONResponse` sends (`send_json`), rendered by
one encoder built once.

It is one service: installed by `HttpGuard` when the app starts (the lifespan event), around the
very app BentoML built, so BentoML's start-up, readiness and shutdown are untouched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from timeit import default_timer
from typing import TYPE_CHECKING, Any

from lifecycle_assets.serving.requests import RequestError, error_body

if TYPE_CHECKING:
    from lifecycle_assets.serving.predictor import Predictor

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)

PREFIX, SUFFIX = "/models/", "/predict"


async def answer(predictor: Predictor, body: bytes) -> tuple[int, dict[str, Any]]:
    """Status and JSON payload of a predict request: 4xx naming the field, or the predictions."""
    try:
        batch = predictor.validator.parse(body)
        rows = await predictor.predict(batch)  # a 422 too: a score that is no finite number
    except RequestError as error:
        predictor.metrics.rejected.labels(predictor.spec.name, str(error.status)).inc()
        return error.status, error.to_dict()
    return 200, {"predictions": rows}


def query_refusal(predictor: Predictor, query: bytes) -> dict[str, Any]:
    """The 400 for a predict request with a query string (counted as rejected).

    The predict routes take no query parameters: the model is named in the path. Ignoring
    `?model=b` on `/predict` would answer (and log) with the default model a client believed
    it had not chosen, and `?model=a&model=b` leaves which one counts to each reader."""
    from urllib.parse import parse_qsl

    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    names = [name for name, _ in pairs]
    repeated = sorted({name[:40] for name in names if names.count(name) > 1})
    given = sorted({name[:40] for name in names})[:5]
    predictor.metrics.rejected.labels(predictor.spec.name, "400").inc()
    if repeated:
        error = f"query parameter {repeated[0]!r} is given more than once"
    else:
        error = f"unknown query parameters {given}"
    return error_body(
        f"{error}; the predict routes take none: name the model in the path "
        "(/models/<name>/predict)"
    )


def model_of(path: str, default: str) -> str | None:
    """The model a predict path names (`default` for `/predict`); None for any other path."""
    if path == SUFFIX:
        return default
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        return name if name and "/" not in name else None
    return None


def _tracing_on() -> bool:
    """True when BentoML is configured to export traces (then every request keeps its span)."""
    try:
        from bentoml._internal.configuration.containers import BentoMLContainer

        tracing = BentoMLContainer.config.tracing
        return bool(tracing.exporter_type.get()) and float(tracing.sample_rate.get() or 0) > 0
    except Exception:  # an unknown configuration layout: keep BentoML's full path
        logger.exception("cannot read BentoML's tracing configuration; no fast path")
        return True


def _find_layer(app: Any, kind: type) -> Any | None:
    """The first middleware of type `kind` in a Starlette middleware chain (`.app` links)."""
    seen = 0
    while app is not None and seen < 50:
        if isinstance(app, kind):
            return app
        app, seen = getattr(app, "app", None), seen + 1
    return None


class _RequestMetrics:
    """BentoML's HTTP request metrics, recorded as its middleware records them, with the
    labelled series cached (looking labels up costs more than recording)."""

    def __init__(self, middleware: Any) -> None:
        from bentoml._internal.context import server_context

        if not middleware._is_setup:
            middleware._setup()
        self.middleware = middleware
        self.context = server_context
        self._series: dict[tuple[str, str, int], Any] = {}

    def _labels(self, endpoint: str) -> dict[str, Any]:
        context = self.context
        return {
            "endpoint": endpoint,
            "service_name": context.bento_name,
            "service_version": context.bento_version,
            "runner_name": context.service_name,
        }

    def series(self, kind: str, endpoint: str, status: int = 0) -> Any:
        key = (kind, endpoint, status)
        found = self._series.get(key)
        if found is None:
            m, labels = self.middleware, self._labels(endpoint)
            if kind == "in_progress":
                found = m.metrics_request_in_progress.labels(**labels)
            elif kind == "last":
                del labels["endpoint"]
                found = m.metrics_last_request_timestamp.labels(**labels)
            elif kind == "total":
                found = m.metrics_request_total.labels(**labels, http_response_code=status)
            else:
                found = m.metrics_request_duration.labels(**labels, http_response_code=status)
            self._series[key] = found
        return found


class FastPredict:
    """Answers the predict routes; everything else goes to `app` (BentoML's stack)."""

    def __init__(self, app: App, max_body_bytes: int, metrics: _RequestMetrics | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        # The worker's service, found once it is running (one per worker process); its
        # `predictors` dict is read on every request, so models added later are found.
        self._service: Any = None
        from lifecycle_assets.serving.http_guard import read_body  # it imports this module

        self._read_body = read_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        predictor = self._predictor(scope["path"])
        if predictor is None:  # not a predict route, not started yet, or no such model (404)
            await self.app(scope, receive, send)
            return
        endpoint, metrics, started = scope["path"], self.metrics, default_timer()
        if metrics is None:
            await self._answer(predictor, scope, receive, send)
            return
        metrics.series("last", endpoint).set_to_current_time()
        in_progress = metrics.series("in_progress", endpoint)
        in_progress.inc()
        status: int | None = 500  # an exception: the server answers 500
        try:
            status = await self._answer(predictor, scope, receive, send)
        finally:
            in_progress.dec()
            # As BentoML's layer: a request counts once answered. A client that left before
            # its body arrived got no answer, and is no server error for the 5xx alert.
            if status is not None:
                metrics.series("total", endpoint, status).inc()
                elapsed = max(default_timer() - started, 0)
                metrics.series("duration", endpoint, status).observe(elapsed)

    async def _answer(
        self, predictor: Predictor, scope: Scope, receive: Receive, send: Send
    ) -> int | None:
        """Answer one predict request; returns the status sent (None when the client left
        before its body arrived, and got no answer)."""
        status: int | None = None

        async def sent(message: Message) -> None:  # only the body reader's own 4xx answers
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        query = scope.get("query_string")
        if query:
            await send_json(send, 400, query_refusal(predictor, query))
            return 400
        body = await self._read_body(scope, receive, sent, self.max_body_bytes, json_only=True)
        if body is None:  # answered 413/415/400 (counted as rejected), or the client left
            if status is not None:
                predictor.metrics.rejected.labels(predictor.spec.name, str(status)).inc()
            return status
        try:
            status, payload = await answer(predictor, body)
        except Exception:
            logger.exception("predict failed on %s", scope["path"])
            status, payload = 500, error_body("internal error")
        await send_json(send, status, payload)
        return status

    def _predictor(self, path: str) -> Predictor | None:
        service = self._service
        if service is None:
            service = self._service = _current_service()
        return predictor_of(service, path)


def predictor_of(service: Any | None, path: str) -> Predictor | None:
    """The predictor a predict path names in `service`; None for another path, an unknown
    model, or no service running yet."""
    predictors = getattr(service, "predictors", None)
    if not predictors:
        return None
    name = model_of(path, service.default_model)
    return None if name is None else predictors.get(name)


def count_refusal(path: str, status: int) -> None:
    """Count a predict request the body reader refused (413, 415, 400) under its model, when
    `HttpGuard` answered it because the fast path is off (tracing on): the same count the fast
    path keeps, so `lifecycle_rejected_requests` does not depend on the tracing setting."""
    predictor = predictor_of(_current_service(), path)
    if predictor is not None:
        predictor.metrics.rejected.labels(predictor.spec.name, str(status)).inc()


def _current_service() -> Any | None:
    """The service this worker runs, None before BentoML has one (or outside a worker)."""
    import bentoml

    try:
        return bentoml.get_current_service()
    except Exception:
        return None


# What Starlette's JSONResponse renders, with the encoder built once: `json.dumps` with options
# builds a new encoder on every call.
_render = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


async def send_json(
    send: Send, status: int, payload: dict[str, Any], extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """The bytes and headers `JSONResponse(payload, status_code=status)` sends (plus `extra`
    headers), without building a response object per request. Every JSON answer the ASGI
    layers write themselves goes through here."""
    body = _render(payload).encode("utf-8")
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# The `endpoint` label of BentoML's request metrics for a path no route serves.
UNROUTED = "<unrouted>"


class Endpoints:
    """The `endpoint` label for a request path: the path itself when a route serves it (a
    fixed route, a served model's `/models/<name>/...`, a mount's own prefix for what is under
    it), else `UNROUTED`.

    BentoML labels its request metrics with the raw path: every path a client makes up (a
    404) created about 20 series for good, so a loop over random paths grew the worker's
    memory and `/metrics` without bound."""

    def __init__(self, app: Any) -> None:
        self.fixed: set[str] = set()
        self.mounts: list[str] = []
        self._collect(getattr(app, "routes", []))
        self._service: Any = None

    def _collect(self, routes: list[Any]) -> None:
        for route in routes:
            path = getattr(route, "path", "")
            inner = getattr(route, "routes", None)
            if inner is not None and not path:  # a mount at the root: its routes are ours
                self._collect(inner)
            elif inner is not None:
                self.mounts.append(path.rstrip("/"))
            elif path and "{" not in path:
                self.fixed.add(path)

    def __call__(self, path: str) -> str:
        if path in self.fixed:
            return path
        if path.startswith(PREFIX):
            name, _, rest = path[len(PREFIX) :].partition("/")
            service = self._service = self._service or _current_service()
            if rest in ("predict", "metadata") and name in getattr(service, "predictors", {}):
                return path
        for mount in self.mounts:
            if path.startswith(mount + "/"):
                return mount
        return UNROUTED


class _BoundedLabels:
    """A BentoML metric whose `endpoint` label goes through `Endpoints` (every other use
    passes through unchanged)."""

    def __init__(self, metric: Any, endpoints: Endpoints) -> None:
        self._metric = metric
        self._endpoints = endpoints

    def labels(self, *args: Any, **labels: Any) -> Any:
        if "endpoint" in labels:
            labels["endpoint"] = self._endpoints(labels["endpoint"])
        return self._metric.labels(*args, **labels)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


def bound_endpoint_labels(layer: Any, endpoints: Endpoints) -> None:
    """Route the `endpoint` label of BentoML's request metrics layer through `endpoints`."""
    if not layer._is_setup:
        layer._setup()
    for name in (
        "metrics_request_total",
        "metrics_request_duration",
        "metrics_request_in_progress",
    ):
        metric = getattr(layer, name, None)
        if metric is not None and not isinstance(metric, _BoundedLabels):
            setattr(layer, name, _BoundedLabels(metric, endpoints))


def install(app: Any, max_body_bytes: int) -> bool:
    """Put `FastPredict` in front of the middleware stack of BentoML's Starlette `app` (built
    by the time the lifespan event runs through it), and bound the `endpoint` label of its
    request metrics. False when the fast path is not installed: tracing on, or not a Starlette
    app with a built stack."""
    stack = getattr(app, "middleware_stack", None)
    if stack is None or isinstance(stack, FastPredict):
        return False
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    layer = _find_layer(stack, RunnerTrafficMetricsMiddleware)
    if layer is not None:
        bound_endpoint_labels(layer, Endpoints(app))
    if _tracing_on():
        return False
    app.middleware_stack = FastPredict(
        stack, max_body_bytes, None if layer is None else _RequestMetrics(layer)
    )
    return True
