"""Ask a running service which versions of a model it serves, without importing MLflow.

`retire` refuses a version the service still uses and `status` shows what it serves; both ask
here. Kept apart from `retire` so the CLI's read-only commands load no registry client.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from lifecycle_assets import config


@dataclass(frozen=True)
class ServiceProbe:
    """What a running service said it serves; `reachable` False means nothing answered."""

    url: str
    reachable: bool
    versions: tuple[str, ...] = ()
    note: str = ""
    metadata: dict | None = None


def _versions_in(payload: Any, name: str) -> set[str]:
    """Every `model_version` in a /metadata answer (champion, canary, shadow...) of `name`."""
    found: set[str] = set()
    if isinstance(payload, dict):
        if payload.get("model_name", name) == name and "model_version" in payload:
            found.add(str(payload["model_version"]))
        for value in payload.values():
            found |= _versions_in(value, name)
    elif isinstance(payload, list):
        for value in payload:
            found |= _versions_in(value, name)
    return found


def probe_service(
    url: str, name: str, timeout: float = config.SERVICE_PROBE_TIMEOUT_SECONDS
) -> ServiceProbe:
    """Ask `GET <url>/models/<name>/metadata` which versions of `name` the service serves
    (best effort)."""
    target = f"{url.rstrip('/')}/models/{name}/metadata"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:
            payload = json.loads(response.read().decode())
    except urllib.error.HTTPError as error:
        if error.code == 404:  # the service is up and serves other models, not this one
            return ServiceProbe(url, True, (), f"{target}: {name} is not served there")
        return ServiceProbe(url, False, (), f"{target} answered {error.code}")
    except (OSError, ValueError) as error:
        # Unreachable or not our service: nothing there serves the version.
        return ServiceProbe(url, False, (), f"no service answered at {target} ({error})")
    versions = tuple(sorted(_versions_in(payload, name)))
    note = f"{target} serves {', '.join(versions) or 'nothing'}"
    return ServiceProbe(url, True, versions, note, payload)
