"""The ASGI guard in front of every route: bounded bodies, relative redirects, the fast path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import prometheus_client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from lifecycle_assets.serving.fast_path import FastPredict, model_of, send_json
from lifecycle_assets.serving.http_guard import HttpGuard, _relative


async def echo(request: Request) -> Response:
    return JSONResponse({"size": len(await request.body())})


def client(limit: int) -> TestClient:
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    return TestClient(HttpGuard(app, max_body_bytes=limit), follow_redirects=False)


def test_bodies_over_the_limit_are_refused_announced_or_streamed() -> None:
    guarded = client(limit=100)
    assert guarded.post("/echo", content=b"x" * 100).json() == {"size": 100}
    assert guarded.post("/echo", content=b"x" * 101).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield from [b"x" * 60, b"x" * 60]  # no Content-Length: counted as it streams

    assert guarded.post("/echo", content=chunks()).status_code == 413


def test_redirects_never_name_the_clients_host() -> None:
    guarded = client(limit=100)
    moved = guarded.post("/echo/", content=b"{}", headers={"Host": "evil.example"})
    assert moved.is_redirect and moved.headers["location"] == "/echo"
    assert _relative(b"http://evil.example//other.example/x?y=1") == b"/other.example/x?y=1"


def test_predict_paths_name_their_model() -> None:
    assert model_of("/predict", "credit_default") == "credit_default"
    assert model_of("/models/churn/predict", "credit_default") == "churn"
    for other in ("/models//predict", "/models/a/b/predict", "/metadata", "/predict/", "/"):
        assert model_of(other, "credit_default") is None


def test_the_fast_path_is_put_ahead_of_the_stack_and_passes_other_requests_through() -> None:
    """As inside BentoML: the guard is a middleware of the app, and installs `FastPredict` in
    front of the app's whole stack when the app starts; with no service running, every request
    (even a POST to /predict) goes on to the app's own routes unchanged."""
    app = Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/predict", echo, methods=["POST"])],
        middleware=[Middleware(HttpGuard, max_body_bytes=100)],
    )
    with TestClient(app) as started:
        assert isinstance(app.middleware_stack, FastPredict)
        assert started.post("/echo", content=b"x" * 10).json() == {"size": 10}
        assert started.post("/predict", content=b"x" * 7).json() == {"size": 7}
        assert started.post("/echo", content=b"x" * 101).status_code == 413
    # Started again (a second lifespan), it is not wrapped twice.
    with TestClient(app):
        assert not isinstance(app.middleware_stack.app, FastPredict)


def test_fast_answers_send_what_starlettes_json_response_sends() -> None:
    """`send_json` renders with one prebuilt encoder; clients must see the same bytes and
    headers as from `JSONResponse`."""
    payload = {
        "predictions": [
            {"prediction": 1, "probability": 0.1 + 0.2, "record_id": "Zoë ✓", "flags": None}
        ],
        "detail": [],
    }

    async def messages(respond: Any) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await respond(send)
        return sent

    async def starlette(send: Any) -> None:
        await JSONResponse(payload, status_code=422)({"type": "http"}, None, send)

    expected = asyncio.run(messages(starlette))
    assert asyncio.run(messages(lambda send: send_json(send, 422, payload))) == expected


def test_a_client_that_leaves_before_its_body_is_no_server_error() -> None:
    """BentoML counts a request once it is answered; the fast path must not count a client
    that hung up mid-body (a timeout, a cancelled call) as a 500, which the 5xx alert reads."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    from lifecycle_assets.serving.fast_path import _RequestMetrics

    metrics = _RequestMetrics(RunnerTrafficMetricsMiddleware(None))
    fast = FastPredict(echo, max_body_bytes=100, metrics=metrics)
    # No request reaches the model: the body never arrives (or is too large).
    rejected = prometheus_client.Counter(
        "rejected", "test", ["model_name", "status"], registry=prometheus_client.CollectorRegistry()
    )
    predictor = SimpleNamespace(
        spec=SimpleNamespace(name="m"), metrics=SimpleNamespace(rejected=rejected)
    )
    fast._service = SimpleNamespace(predictors={"m": predictor}, default_model="m")
    path = "/models/m/predict"

    def count(status: int) -> float:
        return metrics.series("total", path, status)._value.get()

    async def request(*messages: dict[str, Any]) -> list[dict[str, Any]]:
        incoming, sent = list(messages), []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        await fast(scope, receive, send)
        return sent

    failed, refused = count(500), count(413)
    partial = {"type": "http.request", "body": b'{"rec', "more_body": True}
    assert asyncio.run(request(partial, {"type": "http.disconnect"})) == []
    assert count(500) == failed
    assert metrics.series("in_progress", path)._value.get() == 0
    big = {"type": "http.request", "body": b"x" * 101, "more_body": False}
    assert asyncio.run(request(big))[0]["status"] == 413
    assert count(413) == refused + 1
    # Refused at the door, it is a rejected request of its model like a 413 for too many
    # records (`lifecycle_rejected_requests_total`); the client who left is not.
    assert rejected.labels("m", "413")._value.get() == 1
    assert rejected.labels("m", "500")._value.get() == 0


def test_a_path_nothing_serves_is_a_json_404_naming_it() -> None:
    """Unrouted paths got BentoML's bare `Not Found` text while every other error is JSON."""
    guarded = client(limit=100)
    for path in ("/models/credit_default", "/MODELS/x/predict", "/models/a%2Fb/predict"):
        answer = guarded.get(path)
        assert answer.status_code == 404
        assert answer.json()["error"].startswith(f"no route {answer.request.url.path!r}")
        assert "/openapi.json" in answer.json()["error"]
    long = guarded.get("/" + "x" * 5000).json()["error"]
    assert len(long) < 300
    # A known path, another method: a 405, as JSON too, still saying what the path takes.
    wrong = guarded.get("/echo")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "Method Not Allowed")
    assert wrong.headers["allow"] == "POST"
