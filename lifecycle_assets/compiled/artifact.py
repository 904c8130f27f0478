"""The compiled artifact at registration (compile, prove parity, hash) and at load (verify).

Registration asks `compile_for_registration` for the version's compiled tags and the files to
log beside the skops model (under the run's `compiled/` folder). A pipeline that does not
compile, or compiles but fails parity, gets `compiled_status=fallback` and the reason: it is
served by scikit-learn, never by an unproven evaluator. At load the file must match the SHA-256
recorded with that proof (the same bytes, so the same answers), else the version is refused.

Loading needs numpy alone: the compiler, the parity check and their scikit-learn, pandas and
polars are imported by `compile_for_registration` only, so a service starts without them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lifecycle_assets.compiled.model import CompiledModel
from lifecycle_assets.compiled.tags import (
    COMPILED_DIR,
    COMPILED_FILE,
    STATUS_FALLBACK,
    STATUS_OK,
    TAG_COMPILED_PATH,
    TAG_COMPILED_REASON,
    TAG_COMPILED_SHA256,
    TAG_COMPILED_STATUS,
)
from lifecycle_assets.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    from sklearn.pipeline import Pipeline

__all__ = [
    "COMPILED_DIR", "COMPILED_FILE", "STATUS_FALLBACK", "STATUS_OK", "TAG_COMPILED_PATH",
    "TAG_COMPILED_REASON", "TAG_COMPILED_SHA256", "TAG_COMPILED_STATUS",
    "CompiledArtifact", "CompiledIntegrityError", "compile_for_registration", "read_compiled",
]  # fmt: skip


class CompiledIntegrityError(RuntimeError):
    """The compiled file is not the one registered, or no longer matches its pipeline."""


@dataclass(frozen=True)
class CompiledArtifact:
    """What registration records: tags for the version, and files to log under `COMPILED_DIR`."""

    tags: dict[str, str]
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.tags[TAG_COMPILED_STATUS] == STATUS_OK


def _fallback(reason: str) -> CompiledArtifact:
    return CompiledArtifact(
        {TAG_COMPILED_STATUS: STATUS_FALLBACK, TAG_COMPILED_REASON: reason[:480]}
    )


def compile_for_registration(
    pipeline: Pipeline,
    spec: ModelSpec,
    evaluation: pd.DataFrame | pl.DataFrame,
    out_dir: str | Path,
) -> CompiledArtifact:
    """Compile, prove parity on `evaluation` (model-input rows) and edge cases, write the file.

    Never raises for a model that cannot be compiled: that is a fallback with its reason.
    """
    import polars as pl

    from lifecycle_assets.compiled.compile import Unsupported, compile_pipeline
    from lifecycle_assets.compiled.parity import check_parity, parity_rows

    try:
        compiled = compile_pipeline(pipeline, spec)
    except Unsupported as error:
        return _fallback(f"not compiled: {error}")
    except Exception as error:  # a compiler bug must not block registration
        return _fallback(f"compile failed: {type(error).__name__}: {error}")
    data = compiled.to_bytes()
    frame = evaluation if isinstance(evaluation, pl.DataFrame) else pl.from_pandas(evaluation)
    try:
        # Judged as it will serve: read back from the bytes that are logged.
        result = check_parity(
            CompiledModel.from_bytes(data), pipeline, spec, parity_rows(frame, spec)
        )
    except Exception as error:
        return _fallback(f"parity check failed: {type(error).__name__}: {error}")
    if not result.ok:
        return _fallback(f"parity failed on {result.rows} rows: {result.reason}")
    path = Path(out_dir) / COMPILED_FILE
    path.write_bytes(data)
    tags = {
        TAG_COMPILED_STATUS: STATUS_OK,
        TAG_COMPILED_REASON: (
            f"parity on {result.rows} rows: max abs diff {result.max_abs_diff:.3g}, "
            f"{result.label_flips} label flips"
        ),
        TAG_COMPILED_SHA256: hashlib.sha256(data).hexdigest(),
        TAG_COMPILED_PATH: f"{COMPILED_DIR}/{COMPILED_FILE}",
    }
    return CompiledArtifact(tags, [path])


def read_compiled(path: str | Path, expected_sha256: str) -> CompiledModel:
    """Load a compiled file after checking its SHA-256; raises CompiledIntegrityError."""
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if not expected_sha256 or actual != expected_sha256:
        raise CompiledIntegrityError(
            f"compiled artifact has SHA-256 {actual}, but {expected_sha256 or 'none'} was "
            f"recorded at registration"
        )
    return CompiledModel.from_bytes(data)
