"""ASGI middleware in front of every route, BentoML's own included.

- Bounds the request body (`MAX_BODY_BYTES`): a larger body is a 413 before anything reads it,
  whether it announces its length or streams; a 20 MB value never reaches the parser or the log.
- Makes redirects relative: Starlette's trailing-slash redirect builds an absolute `Location`
  from the client's `Host` header, which lets a client point a redirect anywhere.
- Adds a JSON detail to a ready `/readyz` (BentoML answers it with an empty body): whether each
  model serves its alias holder or, degraded, an earlier good version.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# 1,000 records of a dozen fields take about 300 KB; 4 MB leaves room for long ids and batches.
MAX_BODY_BYTES = 4 * 1024 * 1024


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _too_large() -> dict[str, Any]:
    return {"error": f"the request body exceeds {MAX_BODY_BYTES} bytes", "detail": []}


def _relative(location: bytes) -> bytes:
    """`http://any-host/x?y` -> `/x?y`: a redirect stays on the server that sent it."""
    parts = urlsplit(location.decode("latin-1"))
    path = "/" + parts.path.lstrip("/")  # never `//host`, which is absolute too
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")


def readiness_detail() -> dict[str, Any]:
    """Per served model, the version served and the degradation if any (public fields only)."""
    import bentoml

    service = bentoml.get_current_service()
    models = {}
    for name, predictor in sorted(getattr(service, "predictors", {}).items()):
        watcher = predictor.watcher
        degradation = None if watcher is None else watcher.degradation
        models[name] = {
            "version": predictor.served.ref.version,
            "degraded": None if degradation is None else degradation.public(),
        }
    degraded = sorted(n for n, m in models.items() if m["degraded"] is not None)
    return {"status": "degraded" if degraded else "ready", "degraded": degraded, "models": models}


class HttpGuard:
    """See the module docstring; `max_body_bytes` is a parameter so tests can lower it."""

    def __init__(self, app: App, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await self._bounded(scope, receive, send)
            if receive is None:
                return
        await self.app(scope, receive, self._wrap_send(scope, send))

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The body read whole (at most the limit) and replayed; None after answering 413."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > self.max_body_bytes
            except ValueError:
                await _send_json(send, 400, {"error": "invalid Content-Length", "detail": []})
                return None
            if too_large:
                await _send_json(send, 413, _too_large())
                return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_json(send, 413, _too_large())
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _wrap_send(self, scope: Scope, send: Send) -> Send:
        readyz = scope["path"] == "/readyz"
        held: Message | None = None

        async def guarded(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                status = message["status"]
                if 300 <= status < 400:
                    message["headers"] = [
                        (k, _relative(v) if k.lower() == b"location" else v)
                        for k, v in message.get("headers", [])
                    ]
                if readyz and status == 200:
                    held = message  # answered below with the detail
                    return
            elif held is not None and message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                await _send_json(send, 200, readiness_detail())
                return
            await send(message)

        return guarded
