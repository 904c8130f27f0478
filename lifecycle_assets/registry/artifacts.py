"""Save and load scikit-learn pipelines in skops format, guarded by a SHA-256.

Nothing here unpickles: skops loads only types on an explicit allow-list, and every load first
checks that the file's SHA-256 equals the one recorded at registration. skops (and with it
scikit-learn, several seconds) is imported only by the functions that save or load, so hashing
a file costs `hashlib` alone.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lifecycle_assets import storage

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# Module prefixes whose types may appear in a model file; anything else refuses to load.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.")
# Exact names also allowed. HistGradientBoosting keeps a `partial(check_array, ...)` inside;
# skops vets the wrapped function on its own, so the wrapper itself adds no reach.
TRUSTED_TYPES = frozenset({"functools.partial"})


_SKOPS_IMPORT = threading.Lock()


def skops_io() -> ModuleType:
    """`skops.io`, imported without importing all of scikit-learn.

    At import, skops builds its default trust list from `sklearn.utils.all_estimators()`, which
    imports every scikit-learn module (1.6-1.9 s here, in every process that saves or loads a
    model: `lifecycle run`, the service's start-up, `promote`). Nothing here relies on that
    default: every load passes the file's types explicitly, vetted by `TRUSTED_MODULE_PREFIXES`,
    which admit every `sklearn.` type, and the default list holds only `sklearn.` types. So skops
    is imported with an empty estimator list: a load accepts exactly the same types (a test
    compares against skops' own list) and no module the model does not use is imported.
    """
    if (module := sys.modules.get("skops.io")) is not None:
        return module
    import sklearn.utils

    with _SKOPS_IMPORT:
        scan = sklearn.utils.all_estimators
        sklearn.utils.all_estimators = lambda *args, **kwargs: []
        try:
            import skops.io
        finally:
            sklearn.utils.all_estimators = scan
    return skops.io


class IntegrityError(RuntimeError):
    """The artifact on disk is not the one that was registered."""


class UntrustedArtifactError(RuntimeError):
    """The artifact contains types outside the allow-list."""


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with storage.path(path).open("rb") as handle:  # local or object storage
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def save_pipeline(pipeline: Pipeline, path: str | Path) -> str:
    """Write the pipeline as skops and return the file's SHA-256."""
    sio = skops_io()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(pipeline, path)
    return sha256_file(path)


def _allowed(found: list[str], origin: str) -> list[str]:
    rejected = [
        t for t in found if not t.startswith(TRUSTED_MODULE_PREFIXES) and t not in TRUSTED_TYPES
    ]
    if rejected:
        raise UntrustedArtifactError(f"{origin} contains untrusted types: {rejected}")
    return found


def trusted_types_of(pipeline: Pipeline) -> list[str]:
    """Types a pipeline needs skops to trust; raises if any lies outside the allow-list."""
    sio = skops_io()

    return _allowed(sio.get_untrusted_types(data=sio.dumps(pipeline)), "the pipeline")


def trusted_types(path: str | Path) -> list[str]:
    """The file's non-default types, all of which must come from trusted modules."""
    sio = skops_io()

    return _allowed(sio.get_untrusted_types(file=path), str(path))


def check_sha256(path: str | Path, expected_sha256: str) -> None:
    """Raise IntegrityError unless the file's SHA-256 is the one recorded at registration."""
    if not expected_sha256:
        raise IntegrityError(f"no SHA-256 recorded for {path}; refusing to load it")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise IntegrityError(
            f"{path} has SHA-256 {actual}, but {expected_sha256} was recorded at registration"
        )


def load_pipeline(path: str | Path, expected_sha256: str) -> Pipeline:
    """Verify the SHA-256, then load with skops on the allow-list. Raises rather than guess."""
    check_sha256(path, expected_sha256)
    sio = skops_io()

    return sio.load(path, trusted=trusted_types(path))


def load_proof() -> str:
    """What a load proven at registration depends on: the allow-list and the skops release.

    A version tagged with today's value loaded under the same rules it would be loaded by now,
    so a file with the registered SHA-256 (the same bytes) needs no second load to be trusted.
    """
    from importlib.metadata import version

    rules = {
        "prefixes": sorted(TRUSTED_MODULE_PREFIXES),
        "types": sorted(TRUSTED_TYPES),
        "skops": version("skops"),
    }
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]


def prove_load(
    path: str | Path, expected_sha256: str, pipeline: Pipeline, example: Any
) -> str | None:
    """Load the stored file with the allow-list and score `example` with it; the `load_proof()`
    when it scores exactly as `pipeline` does, None when it does not load or differs."""
    import numpy as np

    try:
        loaded = load_pipeline(path, expected_sha256)
    except Exception:  # any failure: no proof, and every later check loads it again
        return None
    score = "predict_proba" if hasattr(pipeline, "predict_proba") else "predict"
    same = np.array_equal(getattr(loaded, score)(example), getattr(pipeline, score)(example))
    return load_proof() if same else None
