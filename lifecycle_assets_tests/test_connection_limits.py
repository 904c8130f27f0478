"""Idle and excess connections: closed, refused with a 503, counted; other clients still served.

Before, a connection that never sent a byte stayed open for ever and nothing bounded how many
were open: one client's idle sockets could use up the worker's file descriptors. The bounds are
checked on a small uvicorn server with low limits, then in the real `bentoml serve`. Loopback
addresses other than 127.0.0.1 stand for other clients (Linux routes all of 127/8 to `lo`).
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from lifecycle_assets.config import Settings
from lifecycle_assets.serving.connection_limits import ConnectionBook
from lifecycle_assets.serving.head_limit import HeadLimitedProtocol
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_hot_swap import wait_for
from lifecycle_assets_tests.test_http_hostile import metric, small_server
from lifecycle_assets_tests.test_http_service import SERVICE, sample_records, serving
from lifecycle_assets_tests.test_prediction_log_e2e import two_champions  # noqa: F401

GET = b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n"
# `LIFECYCLE_MAX_CONNECTIONS_PER_CLIENT` given to the served worker (default 256).
PER_CLIENT = 40


class _Few(HeadLimitedProtocol):
    connections = ConnectionBook(per_client=3, total=5)


def few_server() -> contextlib.AbstractContextManager[int]:
    """uvicorn with `_Few` as its protocol and a 3 s keep-alive, on a free port."""
    return small_server(_Few, timeout_keep_alive=3)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket, wait: float = 0.2) -> bytes | None:
    """What the server sent before closing within `wait` seconds; None when the connection is
    still open then (a refused connection is answered and closed at once)."""
    sock.settimeout(wait)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_over_the_limits_a_503_and_idle_connections_are_closed() -> None:
    with few_server() as port:
        first = [connect(port) for _ in range(3)]
        for sock in first:
            assert closed_by_server(sock) is None  # admitted, open
        refused = closed_by_server(connect(port), wait=10)
        assert refused is not None and refused.startswith(b"HTTP/1.1 503"), refused
        assert b"retry-after: 1" in refused and b"from this address" in refused
        assert _Few.connections.open_from("127.0.0.1") == 3  # the refused one not counted

        # Another client is admitted until the worker's total is reached.
        others = [connect(port, "127.0.0.2") for _ in range(2)]
        assert all(closed_by_server(sock) is None for sock in others)
        refused = closed_by_server(connect(port, "127.0.0.3"), wait=10)
        assert refused is not None and b"to this worker" in refused, refused

        # A closed connection frees its place; the one made in it is served.
        first.pop().close()
        wait_for(lambda: _Few.connections.open_from("127.0.0.1") == 2)
        sock = connect(port)
        sock.sendall(GET)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        first.append(sock)

        # Sending nothing: closed after the keep-alive time (3 s here), as after a response.
        for sock in first + others:
            sock.settimeout(10)
            assert sock.recv(65536) == b""
        wait_for(lambda: _Few.connections.open_from("127.0.0.1") == 0)
        for sock in first + others:
            sock.close()
        with connect(port) as sock:
            sock.sendall(GET)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_the_book_counts_refusals_per_reason() -> None:
    book = ConnectionBook(per_client=1, total=2)
    assert book.admit("a") is None
    assert book.admit("a") == "per_client"
    assert book.admit("b") is None
    assert book.admit("c") == "total"
    book.release("a")
    assert book.admit("c") is None and book.open_from("a") == 0


@pytest.mark.e2e
def test_the_service_closes_idle_connections_and_refuses_a_flood(
    two_champions: dict[str, ModelSpec],  # noqa: F811
    lifecycle_env: Settings,
    tmp_path: Path,
) -> None:
    """One client opening more connections than allowed is refused (503) past the limit;
    every model keeps answering other clients, and the idle connections are closed."""
    cd, el = two_champions["credit_default"], two_champions["expected_loss"]
    limit = {"LIFECYCLE_MAX_CONNECTIONS_PER_CLIENT": str(PER_CLIENT)}
    with serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry", **limit) as url:
        port = int(url.rsplit(":", 1)[1])
        flood = [connect(port) for _ in range(PER_CLIENT + 20)]
        replies = [closed_by_server(sock, wait=10) for sock in flood[PER_CLIENT:]]
        assert all(r is not None and r.startswith(b"HTTP/1.1 503") for r in replies), replies[0]

        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=url, transport=transport, timeout=10) as other:
            for spec in (cd, el):
                body = {"records": sample_records(spec, 2)}
                answer = other.post(f"/models/{spec.name}/predict", json=body)
                assert answer.status_code == 200, answer.text
            refused = metric(
                other.get("/metrics").text,
                "lifecycle_refused_connections_total",
                reason="per_client",
            )
            assert refused == 20

        # The admitted ones sent nothing: the service closes them (keep-alive time, 5 s).
        deadline = time.monotonic() + 30
        for sock in flood[:PER_CLIENT]:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(65536) == b""
        for sock in flood:
            sock.close()
        answer = httpx.post(
            f"{url}/models/{cd.name}/predict",
            json={"records": sample_records(cd, 1)},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
