"""A registry call that cannot reach the MLflow server ends a command in one short line: the
request, the server's host:port and the cause, not urllib3's "HTTPConnectionPool(host=...,
port=...): Max retries exceeded with url: ... (Caused by NewConnectionError('<urllib3.connection.
HTTPConnection object at 0x...>: Failed to establish a new connection: ...'))".

The server here answers the health check the CLI asks first and then stops listening, as a
server that goes down between two calls does: the next request is refused."""

from __future__ import annotations

import http.server
import threading
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.server_check import short_connection_error
from lifecycle_assets.run_results import root_message


class _HealthOnce(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        # Stop listening before answering: the request after this one is refused.
        self.server.socket.close()
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_refused_mlflow_request_ends_the_command_in_one_short_line(
    lifecycle_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _HealthOnce)
    port = server.server_address[1]
    thread = threading.Thread(target=server.handle_request)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        result = CliRunner().invoke(main, ["status", "credit_default"])
    finally:
        thread.join(timeout=10)
        server.server_close()
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: API request to {url}/api/"), line
    assert line.endswith(" failed: [Errno 111] Connection refused"), line
    for noise in ("HTTPConnectionPool", "Max retries", "Caused by", "object at 0x"):
        assert noise not in line, line


@pytest.mark.parametrize(
    ("raw", "short"),
    [
        (
            "HTTPConnectionPool(host='nohost', port=5000): Max retries exceeded with url: /x "
            '(Caused by NameResolutionError("<urllib3.connection.HTTPConnection object at '
            "0x7f3c>: Failed to resolve 'nohost' ([Errno -2] Name or service not known)\"))",
            "nohost:5000: Failed to resolve 'nohost' ([Errno -2] Name or service not known)",
        ),
        (
            "HTTPSConnectionPool(host='10.0.0.1', port=443): Max retries exceeded with url: /x "
            "(Caused by ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at "
            "0x7f3c>, 'Connection to 10.0.0.1 timed out. (connect timeout=5)'))",
            "10.0.0.1:443: Connection to 10.0.0.1 timed out. (connect timeout=5)",
        ),
        (
            "API request to http://h:5000/api/2.0/mlflow/runs/get failed with exception "
            "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: "
            '/api/2.0/mlflow/runs/get (Caused by ReadTimeoutError("HTTPConnectionPool('
            "host='h', port=5000): Read timed out. (read timeout=10)\"))",
            "API request to http://h:5000/api/2.0/mlflow/runs/get failed: Read timed out. "
            "(read timeout=10)",
        ),
        (
            "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: /x "
            "(Caused by ResponseError('too many 500 error responses'))",
            "h:5000: too many 500 error responses",
        ),
        ("RESOURCE_DOES_NOT_EXIST: Registered Model with name=x not found", None),
    ],
)
def test_urllib3_text_is_cut_to_the_server_and_the_cause(raw: str, short: str | None) -> None:
    assert short_connection_error(raw) == (raw if short is None else short)


def test_a_failed_step_s_one_line_is_cut_the_same_way() -> None:
    """`lifecycle run` and `monitor` name a failed step by its root cause (`root_message`)."""
    mlflow_error = SimpleNamespace(
        message="mlflow.exceptions.MlflowException: API request to http://h:5000/api/2.0/mlflow/"
        "runs/get failed with exception HTTPConnectionPool(host='h', port=5000): Max retries "
        "exceeded with url: /api/2.0/mlflow/runs/get?run_id=1 (Caused by NewConnectionError("
        "\"HTTPConnection(host='h', port=5000): Failed to establish a new connection: [Errno "
        '111] Connection refused"))\n',
        cause=None,
    )
    assert root_message(SimpleNamespace(message="step failed", cause=mlflow_error)) == (
        "API request to http://h:5000/api/2.0/mlflow/runs/get failed: [Errno 111] Connection "
        "refused"
    )
