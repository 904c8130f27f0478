"""Bearer-token guard of the admin endpoints (`POST /admin/reload`, `GET /admin/status`).

The token comes from `LIFECYCLE_ADMIN_TOKEN` when the service starts. Without one configured the
admin endpoints are disabled (403) rather than open; a missing or wrong token is a 401. A client
address that sent `LIFECYCLE_ADMIN_MAX_FAILURES` (default 5) missing or wrong tokens within
`WINDOW_SECONDS` gets 429 (with `Retry-After`) on every admin request until the oldest of those
failures leaves the window, the right token included: guessing is throttled whatever the guess.
Each failure is logged with the client address and counted in `lifecycle_admin_refusals`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections import OrderedDict, deque
from typing import Any

import bentoml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lifecycle_assets.serving.requests import error_body, shown
from lifecycle_assets.settings import LifecycleSettings

ENV_ADMIN_TOKEN = "LIFECYCLE_ADMIN_TOKEN"
_SCHEME = "bearer "
# Wrong tokens one address may send per window (`LIFECYCLE_ADMIN_MAX_FAILURES`).
DEFAULT_MAX_FAILURES: int = LifecycleSettings.model_fields["admin_max_failures"].default
WINDOW_SECONDS = 60.0
# Addresses remembered at once: a client cycling through addresses cannot grow memory without
# bound (the oldest address is forgotten first).
MAX_ADDRESSES = 4096

logger = logging.getLogger(__name__)


class FailedTokens:
    """Recent missing or wrong tokens per client address, to throttle guessing."""

    def __init__(
        self, max_failures: int = DEFAULT_MAX_FAILURES, clock: Any = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        cutoff = self.clock() - WINDOW_SECONDS
        while failures and failures[0] <= cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again; None when it is not throttled."""
        failures = self._recent(address)
        if len(failures) < self.max_failures:
            return None
        return max(1, math.ceil(failures[0] + WINDOW_SECONDS - self.clock()))

    def record(self, address: str) -> None:
        failures = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        failures.append(self.clock())
        self._failures[address] = failures  # the newest address last
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)


def _refusals() -> Any:
    """The refusal counter, created with the service's other metrics (see `metrics.py`)."""
    from lifecycle_assets.serving.metrics import prediction_metrics

    return prediction_metrics().admin_refusals


def deny(request: Request, token: str | None, failed: FailedTokens) -> Response | None:
    """The refusal to send, or None when the request carries the configured token."""
    if not token:
        return JSONResponse(
            error_body(f"admin disabled: set {ENV_ADMIN_TOKEN} to enable it"), status_code=403
        )
    address = request.client.host if request.client else "unknown"
    if (wait := failed.retry_after(address)) is not None:
        _refusals().labels("429").inc()
        return JSONResponse(
            error_body(f"too many wrong admin tokens from {address}; retry in {wait} s"),
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    header = request.headers.get("authorization", "")
    given = header[len(_SCHEME) :].strip() if header.lower().startswith(_SCHEME) else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        failed.record(address)
        _refusals().labels("401").inc()
        logger.warning("admin request from %s with a missing or wrong token", address)
        return JSONResponse(
            error_body("missing or wrong admin token"),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


def refused_params(request: Request, known: tuple[str, ...] = ()) -> Response | None:
    """A 400 for a query parameter given twice (`?model=a&model=b`: which one counts is each
    reader's choice) or unknown (`?modle=a` would act on every model); None when fine."""
    params = request.query_params
    for name in params:
        if name not in known:
            return JSONResponse(
                error_body(f"unknown query parameter {shown(name)!r}; known: {list(known)}"), 400
            )
        if len(params.getlist(name)) > 1:
            return JSONResponse(
                error_body(f"query parameter {name!r} is given more than once"), 400
            )
    return None


def _chosen(request: Request, service: Any, known: tuple[str, ...]) -> list[str] | Response:
    """The models an admin request is about: `?model=NAME`, else every served model."""
    if (refused := refused_params(request, known)) is not None:
        return refused
    name = request.query_params.get("model")
    if name is None:
        return list(service.predictors)
    if name not in service.predictors:
        served = sorted(service.predictors)
        return JSONResponse(
            error_body(f"model {shown(name)!r} is not served; served: {served}"), 404
        )
    return [name]


async def reload_endpoint(request: Request) -> Response:
    """Poll the registry now (`?retry=1` also retries refused versions, `?model=NAME` limits it
    to one model); answer the metadata of the default model plus every model's under `models`.
    """
    service = bentoml.get_current_service()
    if (denied := deny(request, service.admin_token, service.failed_tokens)) is not None:
        return denied
    chosen = _chosen(request, service, ("model", "retry"))
    if isinstance(chosen, Response):
        return chosen
    retry = request.query_params.get("retry", "") in ("1", "true")
    for name in chosen:
        watcher = service.predictors[name].watcher
        if watcher is not None:  # a Bento serves its bundled models and never swaps
            await asyncio.to_thread(watcher.poll, retry_refused=retry)
    return _status(service, chosen)


def _status(service: Any, chosen: list[str]) -> Response:
    first = service.predictors[chosen[0] if len(chosen) == 1 else service.default_model]
    models = {n: service.predictors[n].metadata(admin=True) for n in chosen}
    return JSONResponse({**first.metadata(admin=True), "models": models})


async def status_endpoint(request: Request) -> Response:
    """What the service serves, what it refused, and when it last polled the registry."""
    service = bentoml.get_current_service()
    if (denied := deny(request, service.admin_token, service.failed_tokens)) is not None:
        return denied
    chosen = _chosen(request, service, ("model",))
    return chosen if isinstance(chosen, Response) else _status(service, chosen)
