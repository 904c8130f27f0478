"""Bearer-token guard of the admin endpoints (`POST /admin/reload`, `GET /admin/status`).

The token comes from `LIFECYCLE_ADMIN_TOKEN` when the service starts. Without one configured the
admin endpoints are disabled (403) rather than open; a missing or wrong token is a 401.
"""

from __future__ import annotations

import asyncio
import hmac

import bentoml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ENV_ADMIN_TOKEN = "LIFECYCLE_ADMIN_TOKEN"
_SCHEME = "bearer "


def deny(request: Request, token: str | None) -> Response | None:
    """The refusal to send, or None when the request carries the configured token."""
    if not token:
        return JSONResponse(
            {"error": f"admin disabled: set {ENV_ADMIN_TOKEN} to enable it"}, status_code=403
        )
    header = request.headers.get("authorization", "")
    given = header[len(_SCHEME) :].strip() if header.lower().startswith(_SCHEME) else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return JSONResponse(
            {"error": "missing or wrong admin token"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


async def reload_endpoint(request: Request) -> Response:
    """Poll the registry now (`?retry=1` also retries refused versions); answer the metadata."""
    service = bentoml.get_current_service()
    if (denied := deny(request, service.admin_token)) is not None:
        return denied
    predictor = service.predictor
    if predictor.watcher is not None:  # a Bento serves its bundled model and never swaps
        retry = request.query_params.get("retry", "") in ("1", "true")
        await asyncio.to_thread(predictor.watcher.poll, retry_refused=retry)
    return JSONResponse(predictor.metadata())


async def status_endpoint(request: Request) -> Response:
    """What the service serves, what it refused, and when it last polled the registry."""
    service = bentoml.get_current_service()
    if (denied := deny(request, service.admin_token)) is not None:
        return denied
    return JSONResponse(service.predictor.metadata())
