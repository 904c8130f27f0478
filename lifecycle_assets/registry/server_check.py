"""Whether the team's MLflow server answers, asked once per process before anything relies on it.

MLflow's client retries a refused connection for minutes (its HTTP retries with backoff) and then
names an API path, not the setting: a wrong MLFLOW_TRACKING_URI looked like a hung command.
"""

from __future__ import annotations

import urllib.error
import urllib.request

PROBE_TIMEOUT_SECONDS = 5.0
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
