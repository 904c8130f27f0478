"""Registry webhooks: the MLflow server (PostgreSQL store) signs and delivers alias events, and
the service's hook accepts exactly those; a forged, stale or unsigned delivery is refused."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import uvicorn
from mlflow import MlflowClient
from mlflow.webhooks.delivery import _generate_hmac_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lifecycle_assets.serving import registry_hooks
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    MlflowServer,
    free_port,
    mlflow_server,
    moto_s3,
)

SECRET = "s3cret-for-tests"


def _headers(body: bytes, secret: str = SECRET, stamp: int | None = None) -> dict[str, str]:
    delivery, stamp_text = str(uuid.uuid4()), str(int(time.time()) if stamp is None else stamp)
    return {
        "x-mlflow-delivery-id": delivery,
        "x-mlflow-timestamp": stamp_text,
        "x-mlflow-signature": _generate_hmac_signature(secret, delivery, stamp_text, body.decode()),
    }


def test_signatures_match_mlflow_and_refuse_forgeries() -> None:
    body = json.dumps({"entity": "model_version_alias", "action": "created", "data": {}}).encode()
    assert registry_hooks.refusal(SECRET, _headers(body), body) is None
    assert registry_hooks.refusal(SECRET, _headers(body, "other"), body) == "wrong signature"
    assert registry_hooks.refusal(SECRET, _headers(body), body + b" ") == "wrong signature"
    stale = _headers(body, stamp=int(time.time()) - 3600)
    assert registry_hooks.refusal(SECRET, stale, body) == "stale delivery"
    assert registry_hooks.refusal(SECRET, {}, body) == "unsigned delivery"
    # Header bytes beyond ASCII (Starlette reads headers as latin-1): refused, not a 500 from
    # hmac.compare_digest, which compares only ASCII text.
    forged = {**_headers(body), "x-mlflow-signature": "v1,\xff\xfe"}
    assert registry_hooks.refusal(SECRET, forged, body) == "wrong signature"
    odd = {**_headers(body), "x-mlflow-delivery-id": "\xff"}
    assert registry_hooks.refusal(SECRET, {**odd, "x-mlflow-signature": "v1,x"}, body) == (
        "wrong signature"
    )


def test_only_alias_events_trigger_a_poll() -> None:
    created = {"entity": "model_version_alias", "action": "created", "data": {"name": "m"}}
    assert registry_hooks.alias_event(json.dumps(created).encode()) == ("m", {"name": "m"})
    tagged = {"entity": "model_version_tag", "action": "set", "data": {"name": "m"}}
    assert registry_hooks.alias_event(json.dumps(tagged).encode()) is None


@pytest.fixture
def receiver():
    """An HTTP endpoint that checks deliveries as the service's hook does, and records them."""
    received: list[tuple[str, str | None]] = []

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        why = registry_hooks.refusal(SECRET, request.headers, body)
        event = registry_hooks.alias_event(body) if why is None else None
        received.append((json.loads(body)["action"], why))
        return JSONResponse({"event": event is not None}, status_code=401 if why else 200)

    port = free_port()
    app = Starlette(routes=[Route(registry_hooks.PATH, hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", received
    server.should_exit = True
    thread.join(10)


@pytest.mark.team  # the MLflow server on the machine's PostgreSQL
def test_the_mlflow_server_delivers_signed_alias_events(
    mlflow_server: MlflowServer,  # noqa: F811
    receiver,
) -> None:

    url, received = receiver
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = f"hooked-{uuid.uuid4().hex[:8]}"
    webhook = registry_hooks.register_webhook(client, url, SECRET, name=name)
    assert webhook.url == url + registry_hooks.PATH
    client.create_registered_model(name)
    experiment = client.create_experiment(name)
    run = client.create_run(experiment)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", "1")
    client.delete_registered_model_alias(name, "champion")
    deadline = time.monotonic() + 20
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    client.delete_webhook(webhook.webhook_id)  # registry-wide: stop calling a closed port
    assert sorted(received) == [("created", None), ("deleted", None)], received


def test_a_signed_delivery_that_is_no_event_is_a_400(monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.testclient import TestClient

    monkeypatch.setenv("LIFECYCLE_WEBHOOK_SECRET", SECRET)
    app = Starlette(
        routes=[Route(registry_hooks.PATH, registry_hooks.registry_hook_endpoint, methods=["POST"])]
    )
    with TestClient(app) as client:
        for body in (b"[1]", b"{", b"[" * 100_000 + b"]" * 100_000):
            answer = client.post(registry_hooks.PATH, content=body, headers=_headers(body))
            assert answer.status_code == 400, answer.text
            assert answer.json() == {
                "error": "the delivery is not a JSON event object",
                "detail": [],
            }
