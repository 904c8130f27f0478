"""Which models a service process serves and from where, as its environment says.

Apart from `model_source.py` (which downloads and verifies: MLflow, scikit-learn, skops) so that
the `bentoml serve` supervisor, which imports the service module only to check the configuration
and start a worker, imports none of them: they cost seconds of start-up (issue 12).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_MODEL_NAMES = "LIFECYCLE_MODEL_NAMES"
ENV_MODEL_SOURCE = "LIFECYCLE_MODEL_SOURCE"


class ModelSourceError(RuntimeError):
    """The configured model cannot be found; the message says what to run to fix it."""


@functools.cache
def bento_manifest() -> dict[str, Any] | None:
    """The `bento.yaml` of the built Bento this code runs from, or None in a project checkout.

    A Bento lays out `<bento>/bento.yaml` and `<bento>/src/lifecycle_assets/serving/...`; read
    once per process, since the code it runs from does not change under it.
    """
    manifest = Path(__file__).resolve().parents[3] / "bento.yaml"
    return yaml.safe_load(manifest.read_text()) if manifest.exists() else None


def source_mode(env: Mapping[str, str]) -> str:
    # BentoML applies a bentofile's `envs` in containers only; a Bento served with
    # `bentoml serve <tag>` is recognised by its manifest.
    return env.get(ENV_MODEL_SOURCE) or ("bento" if bento_manifest() else "registry")


def explicit_names(env: Mapping[str, str]) -> list[str]:
    return [n.strip() for n in (env.get(ENV_MODEL_NAMES) or "").split(",") if n.strip()]
