"""The ASGI guard in front of every route: bounded bodies, relative redirects."""

from __future__ import annotations

from collections.abc import Iterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

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
