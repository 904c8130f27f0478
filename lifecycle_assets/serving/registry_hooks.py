"""`POST /hooks/registry`: MLflow's registry webhooks make the service poll at once.

A replica learns that `champion`, `canary` or `shadow` moved within a webhook's round trip
instead of within a poll interval; the poll stays as the fallback for a lost delivery. Deliveries
are signed by MLflow (HMAC-SHA256 over `<delivery id>.<timestamp>.<body>`, header
`X-MLflow-Signature: v1,<base64>`) with the secret given when the webhook was created; an
unsigned, wrongly signed or stale delivery is refused, and without a configured secret
(LIFECYCLE_WEBHOOK_SECRET) the endpoint is off (403), as the admin endpoints are.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import bentoml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lifecycle_assets.serving.requests import error_body
from lifecycle_assets.settings import LifecycleSettings

PATH = "/hooks/registry"
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
# Deliveries older (or newer) than this are replays or clock trouble.
MAX_SKEW_SECONDS = 300
ALIAS_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's webhook signature of one delivery."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def refusal(
    secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> str | None:
    """Why a delivery is refused, or None when it is signed by `secret` and fresh."""
    given = headers.get(SIGNATURE_HEADER.lower()) or headers.get(SIGNATURE_HEADER) or ""
    stamp = headers.get(TIMESTAMP_HEADER.lower()) or headers.get(TIMESTAMP_HEADER) or ""
    delivery = headers.get(DELIVERY_HEADER.lower()) or headers.get(DELIVERY_HEADER) or ""
    if not (given and stamp and delivery):
        return "unsigned delivery"
    try:
        skew = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        return "bad timestamp"
    if skew > MAX_SKEW_SECONDS:
        return "stale delivery"
    # As bytes: compare_digest refuses text beyond ASCII, which any client can send (a 500).
    if not hmac.compare_digest(given.encode(), signature(secret, delivery, stamp, body).encode()):
        return "wrong signature"
    return None


def alias_event(body: bytes) -> tuple[str, dict[str, Any]] | None:
    """(model name, data) of an alias created/deleted event; None for any other event."""
    event = json.loads(body)
    if f"{event.get('entity')}.{event.get('action')}" not in ALIAS_EVENTS:
        return None
    data = event.get("data") or {}
    return str(data.get("name", "")), data


async def registry_hook_endpoint(request: Request) -> Response:
    """Verify the delivery, then poll the registry now for the model whose alias moved."""
    secret = LifecycleSettings.from_env().webhook_secret
    if not secret:
        return JSONResponse(error_body("webhooks off: set LIFECYCLE_WEBHOOK_SECRET"), 403)
    body = await request.body()
    if (why := refusal(secret, request.headers, body)) is not None:
        return JSONResponse(error_body(why), status_code=401)
    try:
        event = alias_event(body)
    except (ValueError, AttributeError, RecursionError):  # signed, not a JSON event object
        return JSONResponse(error_body("the delivery is not a JSON event object"), 400)
    service = bentoml.get_current_service()
    if event is None or event[0] not in service.predictors:
        return JSONResponse({"polled": []})
    watcher = service.predictors[event[0]].watcher
    if watcher is not None:  # a Bento serves its bundled models and never swaps
        await asyncio.to_thread(watcher.poll)
    return JSONResponse({"polled": [event[0]] if watcher is not None else []})


def register_webhook(client: Any, service_url: str, secret: str, name: str | None = None) -> Any:
    """Ask the MLflow server to call this service's hook on every alias change."""
    url = service_url.rstrip("/") + PATH
    # MLflow allows letters, digits, `.`, `_` and `-` in a name: `host:port` -> `host-port`.
    where = re.sub(r"[^A-Za-z0-9._-]", "-", url.split("://", 1)[-1].split("/", 1)[0])
    return client.create_webhook(
        name=name or f"lifecycle-service-{where}"[:62],
        url=url,
        events=list(ALIAS_EVENTS),
        secret=secret,
        description="the model service polls the registry at once when an alias moves",
    )
