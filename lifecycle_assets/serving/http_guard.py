"""ASGI middleware in front of every route, BentoML's own included.

- Bounds the request body (`MAX_BODY_BYTES`): a larger body is a 413 before anything reads it,
  whether it announces its length or streams; a 20 MB value never reaches the parser or the log.
- Makes redirects relative: Starlette's trailing-slash redirect builds an absolute `Location`
  from the client's `Host` header, which lets a client point a redirect anywhere.
- Puts the predict routes in front of BentoML's per-request layers when the app starts
  (`fast_path.py`); they bound the body with the same `read_body`.
- Adds a JSON detail to a ready `/readyz` (BentoML answers it with an empty body): whether each
  model serves its alias holder or, degraded, an earlier good version, and which canary or
  shadow does not serve (`lost_roles.py`).
- Answers a path nothing serves with a JSON 404 naming it, and a method a route does not take
  with a JSON 405, like every other error (BentoML's own are bare `Not Found` and `Method Not
  Allowed` texts).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from lifecycle_assets.serving import fast_path
from lifecycle_assets.serving.fast_path import App, Message, Receive, Scope, Send, send_json
from lifecycle_assets.serving.requests import error_body, shown

logger = logging.getLogger(__name__)

# 1,000 records of a dozen fields take about 300 KB; 4 MB leaves room for long ids and batches.
MAX_BODY_BYTES = 4 * 1024 * 1024


def _too_large(max_bytes: int) -> dict[str, Any]:
    return error_body(f"the request body exceeds {max_bytes} bytes")


def _unsupported_encoding(encoding: bytes) -> dict[str, Any]:
    given = encoding.decode("latin-1")[:40]
    return error_body(f"Content-Encoding {given!r} is not supported; send the body uncompressed")


def not_json(content_type: bytes | None) -> dict[str, Any] | None:
    """The 415 payload for a body declared as something else than JSON; None for JSON or no
    declaration. A form or `text/plain` body is what a web page can send to a local service
    without the browser asking first (no CORS preflight): refused, it cannot predict (and fill
    the prediction log) from another site."""
    if content_type is None:
        return None
    media = content_type.partition(b";")[0].strip().lower()
    if media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    ):
        return None
    given = content_type.decode("latin-1")[:60]
    return error_body(f"Content-Type {given!r} is not supported; send application/json")


async def read_body(
    scope: Scope, receive: Receive, send: Send, max_bytes: int, json_only: bool = False
) -> bytes | None:
    """The request body, at most `max_bytes`; None after answering 413 (or 400 for a bad
    Content-Length, 415 for a compressed body or, with `json_only`, one declared as something
    else than JSON), or when the client went away. Shared with the hot routes (`fast_path.py`).

    A compressed body (`Content-Encoding: gzip`, `br`, ...) is refused, not decoded: the 4 MB
    bound would then hold for the compressed bytes only (a 4 MB gzip bomb inflates to
    gigabytes), bounding the inflated size needs a streaming decoder per request, and the
    bodies here (a few KB of JSON per batch) gain little from compression on the way in. A
    reverse proxy can decode before the service if clients must compress."""
    headers = dict(scope.get("headers") or [])
    encoding = headers.get(b"content-encoding")
    if encoding is not None and encoding.strip().lower() != b"identity":
        await send_json(send, 415, _unsupported_encoding(encoding))
        return None
    if json_only and (refused := not_json(headers.get(b"content-type"))) is not None:
        await send_json(send, 415, refused)
        return None
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            too_large = int(declared) > max_bytes
        except ValueError:
            await send_json(send, 400, error_body("invalid Content-Length"))
            return None
        if too_large:
            await send_json(send, 413, _too_large(max_bytes))
            return None
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            await send_json(send, 413, _too_large(max_bytes))
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _relative(location: bytes) -> bytes:
    """`http://any-host/x?y` -> `/x?y`: a redirect stays on the server that sent it."""
    parts = urlsplit(location.decode("latin-1"))
    path = "/" + parts.path.lstrip("/")  # never `//host`, which is absolute too
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")


def readiness_detail() -> dict[str, Any]:
    """Per served model, the version served, the degradation if any and the canary or shadow
    that does not serve (public fields only); under `not_served`, each model the registry lost
    the champion of, and why.

    Still a 200 whatever it says: every model listed answers every request with its champion
    (or its last good version), and a 503 would take a replica that answers correctly out of a
    load balancer, and with it, all replicas following the same registry. `status` is `ready`
    only when everything the registry and the ledger name serves, else `degraded`.
    """
    import bentoml

    service = bentoml.get_current_service()
    models = {}
    lost_roles = {}
    for name, predictor in sorted(getattr(service, "predictors", {}).items()):
        watcher = predictor.watcher
        degradation = None if watcher is None else watcher.degradation
        lost = {} if watcher is None else watcher.lost.public()
        models[name] = {
            "version": predictor.served.ref.version,
            "degraded": None if degradation is None else degradation.public(),
            "lost_roles": lost,
        }
        if lost:
            lost_roles[name] = sorted(lost)
    degraded = sorted(n for n, m in models.items() if m["degraded"] is not None)
    # A model whose champion the registry lost serves nothing: why, and what to run.
    not_served = dict(getattr(service, "lost", {}))
    status = "degraded" if degraded or not_served or lost_roles else "ready"
    return {
        "status": status,
        "degraded": degraded,
        "lost_roles": lost_roles,
        "models": models,
        "not_served": not_served,
    }


class HttpGuard:
    """See the module docstring; `max_body_bytes` is a parameter so tests can lower it."""

    def __init__(self, app: App, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.fast_path_checked = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and not self.fast_path_checked:
                # The app BentoML built runs its start-up through here: the one moment one of
                # our layers holds it, to put the hot routes in front of it (`fast_path.py`).
                self.fast_path_checked = True
                installed = fast_path.install(scope.get("app"), self.max_body_bytes)
                logger.info("predict routes ahead of BentoML's middleware: %s", installed)
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await self._bounded(scope, receive, send)
            if receive is None:
                return
        await self.app(scope, receive, self._wrap_send(scope, send))

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The body read whole (at most the limit) and replayed; None after answering (a
        refused predict request counted under its model)."""
        refused: int | None = None

        async def answered(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start":
                refused = message["status"]
            await send(message)

        body = await read_body(scope, receive, answered, self.max_body_bytes)
        if body is None:
            if refused is not None and scope["method"] == "POST":
                fast_path.count_refusal(scope["path"], refused)
            return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    def _wrap_send(self, scope: Scope, send: Send) -> Send:
        path = scope["path"]
        readyz = path == "/readyz"
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
                if (readyz and status == 200) or (status in (404, 405) and _plain_text(message)):
                    held = message  # answered below: readiness detail, or a JSON 404 / 405
                    return
            elif held is not None and message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                if held["status"] == 404:
                    await send_json(send, 404, _no_route(path))
                    return
                if held["status"] == 405:  # BentoML's own routes (/metrics, /readyz, ...)
                    allow = [(k, v) for k, v in held.get("headers", []) if k.lower() == b"allow"]
                    error = error_body("Method Not Allowed")
                    await send_json(send, 405, error, allow)
                    return
                try:
                    detail = readiness_detail()
                except Exception:  # readiness must never fail on its own detail
                    logger.exception("cannot describe readiness")
                    detail = {"status": "ready"}
                await send_json(send, 200, detail)
                return
            await send(message)

        return guarded


def _plain_text(start: Message) -> bool:
    """Whether a response is plain text (BentoML's and Starlette's bare `Not Found`)."""
    headers = dict(start.get("headers") or [])
    return headers.get(b"content-type", b"").startswith(b"text/plain")


def _no_route(path: str) -> dict[str, Any]:
    """A path nothing serves, as JSON like every other error, naming it (cut short)."""
    return error_body(f"no route {shown(path)!r}; the routes are listed at /openapi.json")
