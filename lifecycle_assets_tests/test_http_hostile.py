"""A hostile client against the two-model service: every mistake a clear 4xx, nothing miscounted.

Covers what a client can send besides a bad record: a compressed body, query parameters the
routes do not take (or take once), a huge or endless request head, a request that never
finishes arriving. The protocol bounds are checked on a small uvicorn server of their own (short
limits), and once more in the real `bentoml serve`, where they must be installed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from lifecycle_assets.config import Settings
from lifecycle_assets.serving import admin
from lifecycle_assets.serving.admin import FailedTokens
from lifecycle_assets.serving.head_limit import HeadLimitedProtocol
from lifecycle_assets.serving.http_guard import HttpGuard
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.log_rows import logged_lines
from lifecycle_assets_tests.test_hot_swap import wait_for
from lifecycle_assets_tests.test_http_service import SERVICE, free_port, sample_records, serving
from lifecycle_assets_tests.test_prediction_log_e2e import two_champions  # noqa: F401


async def echo(request: Request) -> Response:
    return JSONResponse({"size": len(await request.body())})


def test_a_compressed_body_is_a_415_naming_its_encoding() -> None:
    """It was decoded as JSON text: a confusing utf-8 error. Refused, never inflated."""
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    guarded = TestClient(HttpGuard(app, max_body_bytes=100))
    packed = gzip.compress(b'{"records": []}')
    for encoding in ("gzip", "br", "GZIP, identity"):
        answer = guarded.post("/echo", content=packed, headers={"Content-Encoding": encoding})
        assert answer.status_code == 415
        assert f"Content-Encoding {encoding!r} is not supported" in answer.json()["error"]
    plain = guarded.post("/echo", content=b"{}", headers={"Content-Encoding": "identity"})
    assert plain.json() == {"size": 2}


class _Small(HeadLimitedProtocol):
    max_head_bytes = 2048
    read_seconds = 1.0


@contextlib.contextmanager
def small_server(protocol: type[HeadLimitedProtocol] = _Small, **options: Any) -> Iterator[int]:
    """uvicorn with `protocol` (short limits) as BentoML's worker runs it, on a free port;
    `options` are more uvicorn settings."""
    app = Starlette(routes=[Route("/echo", echo, methods=["POST", "GET"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, http=protocol, log_level="error", **options
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def exchange(port: int, *parts: bytes, pause: float = 0.0, wait: float = 5.0) -> bytes:
    """Send `parts` on one connection (`pause` seconds apart); all the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        with contextlib.suppress(OSError):
            for part in parts:
                sock.sendall(part)
                time.sleep(pause)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
        return received


def test_a_huge_or_endless_head_and_a_stalled_body_are_cut_off() -> None:
    """httptools reads any head whole, for ever: bounded in size (431) and time (408)."""
    with small_server() as port:
        fine = b"GET /echo HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 1500 + b"\r\n\r\n"
        assert exchange(port, fine, wait=1).startswith(b"HTTP/1.1 200")
        huge = b"GET /echo HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 3000 + b"\r\n\r\n"
        answer = exchange(port, huge)
        assert answer.startswith(b"HTTP/1.1 431"), answer
        assert b"exceed 2048 bytes" in answer
        # Streamed in small pieces, the head is counted as it grows.
        pieces = [b"GET /echo HTTP/1.1\r\nhost: x\r\n"] + [b"x-a: " + b"b" * 500 + b"\r\n"] * 8
        assert exchange(port, *pieces, pause=0.01).startswith(b"HTTP/1.1 431")
        # A head, then a body, that never finish: answered 408 after the deadline, then closed.
        started = time.monotonic()
        assert exchange(port, b"GET /echo HTTP/1.1\r\nhost: x\r\n").startswith(b"HTTP/1.1 408")
        stalled = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345"
        assert exchange(port, stalled).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4
        # Keep-alive requests, each whole, are never timed out between them.
        post = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
        answers = exchange(port, post, post, post, pause=0.6, wait=1)
        assert answers.count(b"HTTP/1.1 200") == 3 and b"408" not in answers


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.e2e
def test_two_models_against_a_hostile_client(
    two_champions: dict[str, ModelSpec],  # noqa: F811
    lifecycle_env: Settings,
    tmp_path: Path,
) -> None:
    cd, el = two_champions["credit_default"], two_champions["expected_loss"]
    token = {"Authorization": "Bearer s3cret"}
    with (
        serving(
            SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry", LIFECYCLE_ADMIN_TOKEN="s3cret"
        ) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        # An optional (audit-only) field sent as null is left out; a required one is a 422.
        record = {**sample_records(cd, 1)[0], "gender": None}
        answer = client.post(f"/models/{cd.name}/predict", json={"records": [record]})
        assert answer.status_code == 200, answer.text
        null_id = answer.json()["predictions"][0]["prediction_id"]
        answer = client.post("/predict", json={"records": [{**record, "age": None}]})
        assert (answer.status_code, answer.json()["error"]) == (
            422,
            "records[0].age: must not be null or NaN",
        )

        # A gzip body: a 415 naming the encoding, on either model's route.
        packed = gzip.compress(json.dumps({"records": [record]}).encode())
        for path in ("/predict", f"/models/{el.name}/predict"):
            answer = client.post(path, content=packed, headers={"Content-Encoding": "gzip"})
            assert answer.status_code == 415, answer.text
            assert "'gzip' is not supported" in answer.json()["error"]

        # A body declared as a form or text (what a web page may send to a local service
        # without a CORS preflight) is a 415; JSON, or no declaration, is read.
        text = json.dumps({"records": [record]})
        for declared, status in (
            ("text/plain", 415),
            ("application/x-www-form-urlencoded", 415),
            ("multipart/form-data; boundary=x", 415),
            ("application/json; charset=utf-8", 200),
            ("application/vnd.lifecycle+json", 200),
            (None, 200),
        ):
            headers = {} if declared is None else {"Content-Type": declared}
            answer = client.post("/predict", content=text, headers=headers)
            assert answer.status_code == status, (declared, answer.text)
            if status == 415:
                assert f"Content-Type {declared!r} is not supported" in answer.json()["error"]
        wrong = client.request("OPTIONS", "/metrics")
        assert (wrong.status_code, wrong.json()["error"]) == (405, "Method Not Allowed")

        # Query parameters: the predict routes take none (the model is in the path); admin
        # takes each of its own once.
        body = {"records": sample_records(el, 1)}
        answer = client.post(f"/predict?model={el.name}", json=body)
        assert answer.status_code == 400 and "'model'" in answer.json()["error"], answer.text
        answer = client.post(f"/models/{el.name}/predict?model=a&model=b", json=body)
        assert answer.status_code == 400, answer.text
        assert "'model' is given more than once" in answer.json()["error"]
        twice = f"/admin/status?model={cd.name}&model={el.name}"
        assert client.get(twice).status_code == 401  # the token first: nothing said without it
        answer = client.get(twice, headers=token)
        assert answer.status_code == 400 and "'model' is given more than once" in answer.text
        answer = client.post(f"/admin/reload?model={el.name}&model={el.name}", headers=token)
        assert answer.status_code == 400, answer.text
        answer = client.post(f"/admin/reload?modle={el.name}", headers=token)
        assert answer.status_code == 400 and "unknown query parameter 'modle'" in answer.text
        answer = client.get(f"/metadata?model={el.name}")  # not the default model's silently
        assert answer.status_code == 400 and "unknown query parameter 'model'" in answer.text
        assert client.get(f"/models/{el.name}/metadata?x=1").status_code == 400
        answer = client.get(f"/admin/status?model={el.name}", headers=token)
        assert answer.status_code == 200 and list(answer.json()["models"]) == [el.name]

        # A 100 KB header: a 431, and the service keeps serving.
        raw = exchange(
            int(url.rsplit(":", 1)[1]),
            b"GET /livez HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 100_000 + b"\r\n\r\n",
        )
        assert raw.startswith(b"HTTP/1.1 431"), raw[:200]
        assert client.get("/readyz").status_code == 200

        # Made-up paths: BentoML labelled its request metrics with each one (about 20 series
        # per path, for good); they are counted under one label.
        for i in range(25):
            assert client.get(f"/made-up/{i}").status_code == 404
            assert client.post(f"/models/nope{i}/predict", json=body).status_code == 404
            assert client.get(f"/static_content/nope{i}").status_code == 404
        # An unknown model's name is repeated cut short, not 5,000 characters long.
        for path in ("/models/" + "x" * 5000 + "/predict", "/models/" + "x" * 5000 + "/metadata"):
            answer = client.request("POST" if path.endswith("predict") else "GET", path, json=body)
            assert answer.status_code == 404 and len(answer.json()["error"]) < 200, answer.text
        answer = client.get("/admin/status?model=" + "x" * 5000, headers=token)
        assert answer.status_code == 404 and len(answer.json()["error"]) < 200
        metrics = client.get("/metrics").text
        assert "made-up" not in metrics and "nope" not in metrics
        unrouted = re.search(
            r'^bentoml_service_request_total\{endpoint="<unrouted>",http_response_code="404"'
            r"[^}]*\} ([0-9.]+)$",
            metrics,
            re.M,
        )
        assert unrouted and float(unrouted.group(1)) == 50 + 2, metrics[-3000:]
        assert 'endpoint="/static_content",http_response_code="404"' in metrics
        assert f'endpoint="/models/{el.name}/predict",http_response_code="400"' in metrics
        for model, status, count in (
            (cd.name, "415", 4),  # the gzip body and three bodies declared as not JSON
            (el.name, "415", 1),
            (cd.name, "400", 1),  # `/predict?model=...` is the default model's route
            (el.name, "400", 1),
        ):
            found = metric(
                metrics, "lifecycle_rejected_requests_total", model_name=model, status=status
            )
            assert found == count, (model, status)

    (row,) = [
        r
        for r in logged_lines(lifecycle_env.prediction_log_dir, cd.name)
        if r["prediction_id"] == null_id
    ]
    assert row["gender"] is None and row["model_name"] == cd.name


@contextlib.contextmanager
def zipkin_receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local Zipkin collector (its v2 JSON endpoint): the URL and the spans it received."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    spans: list[dict] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            spans.extend(json.loads(self.rfile.read(length)))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2/spans", spans
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.e2e
def test_with_tracing_on_refusals_are_counted_and_admin_guessing_is_throttled(
    two_champions: dict[str, ModelSpec],  # noqa: F811
    lifecycle_env: Settings,
    tmp_path: Path,
) -> None:
    """Tracing on keeps BentoML's own request path (no fast path): a body the guard refuses is
    still counted under its model, and the spans reach a Zipkin collector (the README's
    configuration). A client guessing the admin token is throttled (429, the right token
    included) while predictions go on."""
    el = two_champions["expected_loss"]
    traced = "services.lifecycle_model.tracing"
    token = {"Authorization": "Bearer s3cret"}
    with (
        zipkin_receiver() as (collector, spans),
        serving(
            SERVICE,
            tmp_path,
            BENTOML_CONFIG_OPTIONS=(
                f"{traced}.exporter_type=zipkin {traced}.sample_rate=1.0 "
                f"{traced}.zipkin.endpoint={collector}"
            ),
            LIFECYCLE_MODEL_SOURCE="registry",
            LIFECYCLE_ADMIN_TOKEN="s3cret",
            LIFECYCLE_ADMIN_MAX_FAILURES="3",  # the setting reaches the worker (default 5)
        ) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        path = f"/models/{el.name}/predict"
        body = {"records": sample_records(el, 1)}
        assert client.post(path, json=body).status_code == 200
        huge = b'{"records": [' + b" " * (5 * 1024 * 1024) + b"]}"
        assert client.post(path, content=huge).status_code == 413
        packed = gzip.compress(json.dumps(body).encode())
        answer = client.post(path, content=packed, headers={"Content-Encoding": "gzip"})
        assert answer.status_code == 415

        assert client.get("/admin/status", headers=token).status_code == 200
        for _ in range(3):
            wrong = client.get("/admin/status", headers={"Authorization": "Bearer guess"})
            assert wrong.status_code == 401
            assert wrong.json() == {"error": "missing or wrong admin token", "detail": []}
        throttled = client.get("/admin/status", headers=token)
        assert throttled.status_code == 429, throttled.text
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert "too many wrong admin tokens" in throttled.json()["error"]
        assert throttled.json()["detail"] == []
        assert client.post(path, json=body).status_code == 200  # predictions are not throttled

        metrics = client.get("/metrics").text
        for status, count in (("413", 1), ("415", 1)):
            found = metric(
                metrics, "lifecycle_rejected_requests_total", model_name=el.name, status=status
            )
            assert found == count, (status, metrics[-3000:])
        assert metric(metrics, "lifecycle_admin_refusals_total", status="401") == 3
        assert metric(metrics, "lifecycle_admin_refusals_total", status="429") == 1

        # Spans are exported in batches (every 5 s): the predict route's reach the collector.
        def traced_statuses() -> list[str]:
            return sorted(
                span["tags"]["http.status_code"]
                for span in list(spans)
                if span.get("kind") == "SERVER" and span.get("name") == f"POST {path}"
            )

        wait_for(lambda: traced_statuses() == ["200", "200", "413", "415"], 60)
        assert {span["localEndpoint"]["serviceName"] for span in spans} == {"lifecycle_model"}
    # BentoML's own path served the predictions: its access log has them (the fast path's
    # requests are not in it), with sampled traces.
    served_log = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert f"path={path}," in served_log and "sampled=1" in served_log, served_log[-3000:]


def test_admin_guessing_is_throttled_per_address_for_a_window() -> None:
    now = [1000.0]
    failed = FailedTokens(clock=lambda: now[0])
    for _ in range(admin.DEFAULT_MAX_FAILURES - 1):
        failed.record("10.0.0.1")
    assert failed.retry_after("10.0.0.1") is None
    failed.record("10.0.0.1")
    assert failed.retry_after("10.0.0.1") == admin.WINDOW_SECONDS
    assert failed.retry_after("10.0.0.2") is None  # another address is not throttled
    now[0] += admin.WINDOW_SECONDS - 1
    assert failed.retry_after("10.0.0.1") == 1
    now[0] += 1  # the oldest failure left the window: one more try
    assert failed.retry_after("10.0.0.1") is None
    for i in range(admin.MAX_ADDRESSES + 10):  # addresses made up by the thousand
        failed.record(f"fd00::{i}")
    assert len(failed._failures) == admin.MAX_ADDRESSES


def test_admin_refusals_have_the_error_shape_of_every_other_answer() -> None:
    """`{"error", "detail"}` like every refusal (the OpenAPI `Error` schema requires both);
    before, the admin and webhook refusals had no `detail`."""
    scope = {"type": "http", "method": "GET", "path": "/admin/status", "headers": []}
    scope |= {"query_string": b"", "client": ("10.0.0.9", 1)}
    request = Request(scope)
    disabled = admin.deny(request, token=None, failed=FailedTokens())
    assert disabled is not None and disabled.status_code == 403
    assert json.loads(disabled.body) == {
        "error": f"admin disabled: set {admin.ENV_ADMIN_TOKEN} to enable it",
        "detail": [],
    }
    wrong = admin.deny(request, token="t", failed=FailedTokens())
    assert wrong is not None and json.loads(wrong.body)["detail"] == []
    scope["query_string"] = b"modle=a"
    unknown = admin.refused_params(Request(scope), ("model",))
    assert unknown is not None and json.loads(unknown.body)["detail"] == []
