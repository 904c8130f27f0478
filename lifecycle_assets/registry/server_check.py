"""Whether the team's MLflow server answers, asked once per process before anything relies on it.

MLflow's client retries a refused connection for minutes (its HTTP retries with backoff) and then
names an API path, not the setting: a wrong MLFLOW_TRACKING_URI looked like a hung command.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

PROBE_TIMEOUT_SECONDS = 5.0
# urllib3's text in MLflow's "API request to <url> failed with exception <text>".
_POOL = re.compile(
    r"HTTPS?ConnectionPool\(host='(?P<host>[^']*)', port=(?P<port>\d+)\): (?P<what>.*)"
)
_CAUSED_BY = re.compile(r"\(Caused by \w+\((?P<args>.*)\)\)\s*$")
# The connection the cause names: urllib3 1.x's "<... object at 0x...>", 2.x's
# "HTTPConnection(host='h', port=5000)".
_OBJECT = re.compile(
    r"(<[^<>]* object at 0x[0-9a-fA-F]+>|HTTPS?Connection\(host='[^']*', port=\d+\))(: |, )?"
)
_answered: set[str] = set()


class TrackingServerError(ValueError):
    """The MLflow server of MLFLOW_TRACKING_URI does not answer: one line naming it."""


def check_tracking_server(uri: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> None:
    """Fail within `timeout` when nothing answers at `uri`, or what answers is not MLflow.

    Only `http(s)://` URIs are probed; an answer other than "no such page" counts as MLflow
    (a server behind authentication may refuse the probe yet serve the client).
    """
    if not uri.startswith(("http://", "https://")) or uri in _answered:
        return
    health = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            pass
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise TrackingServerError(
                f"the MLflow server {uri} (MLFLOW_TRACKING_URI) is not an MLflow server: "
                f"{health} answered HTTP 404"
            ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingServerError(
            f"the MLflow server {uri} (MLFLOW_TRACKING_URI) does not answer: {reason}; start "
            "it (`make mlflow-server`) or correct the URI"
        ) from None
    _answered.add(uri)


def short_connection_error(line: str) -> str:
    """`line` with urllib3's text about a failed request cut to the server's host:port and the
    cause: "HTTPConnectionPool(host='h', port=5000): Max retries exceeded with url: /api/...
    (Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f..>: Failed
    to establish a new connection: [Errno 111] Connection refused'))" becomes
    "h:5000: [Errno 111] Connection refused" (without "h:5000: " when `line` names the server
    already, as MLflow's "API request to http://h:5000/..." does). Other lines stay as they are."""
    found = _POOL.search(line)
    if found is None:
        return line
    what = found["what"].strip()
    if (caused := _CAUSED_BY.search(what)) is not None:
        cause = _OBJECT.sub("", caused["args"]).strip(" '\"")
        cause = cause.removeprefix("Failed to establish a new connection: ")
        # A timeout's cause repeats the pool: "HTTPConnectionPool(...): Read timed out. (...)".
        if (inner := _POOL.search(cause)) is not None:
            cause = inner["what"].strip()
    else:
        cause = what
    head = line[: found.start()].replace(" failed with exception ", " failed: ")
    server = f"{found['host']}:{found['port']}"
    # MLflow's "API request to http://host:port/..." names the server already.
    return f"{head}{cause}" if server in head else f"{head}{server}: {cause}"
