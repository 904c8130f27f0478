"""Where a version's `evaluation.json` is kept, and how it is read back.

Apart from `ml.evaluation` (which computes the report with scikit-learn's metrics) so that
reading a report, as `trace` and `lineage` do, loads neither scikit-learn nor MLflow when the
run's artifacts are files (or objects `storage` reaches): they are then read in place.
"""

from __future__ import annotations

from pathlib import Path

from lifecycle_assets import storage

EVALUATION_FILE = "evaluation.json"
# The evaluation asset logs its report folder to the version's MLflow run under this directory.
EVALUATION_ARTIFACT_DIR = "evaluation"


def read_evaluation(
    reports_dir: Path,
    model: str,
    version: str,
    run_id: str | None,
    *,
    run_first: bool = False,
    run_artifacts: str | None = None,
) -> tuple[bytes | None, str]:
    """The bytes of a version's `evaluation.json` and where they were read from; (None, "")
    when there is none. Bytes, so that they are checked against their sealed SHA-256: read them
    through `registry/gate_record.py` (the one door to the verdicts), not here.

    The evaluation asset writes it to the version's report folder and logs that folder to the
    version's run. The folder is read first, which spares a download; an audit passes
    `run_first`, since the run's copy is the record and the folder only a working copy.
    `run_artifacts` is the run's artifact root when `storage` can open it (see
    `registry.reader.local_or_stored`): the run's copy is then read there, without MLflow.
    """
    local = storage.path(reports_dir) / model / f"v{version}" / EVALUATION_FILE  # local or S3
    artifact = f"{EVALUATION_ARTIFACT_DIR}/{EVALUATION_FILE}"

    def from_folder() -> tuple[bytes, str] | None:
        return (local.read_bytes(), str(local)) if local.exists() else None

    def in_place() -> tuple[bytes, str] | None:
        logged = storage.path(f"{str(run_artifacts).rstrip('/')}/{artifact}")
        if not logged.exists():
            return None
        return logged.read_bytes(), f"runs:/{run_id}/{artifact}"

    def from_run() -> tuple[bytes, str] | None:
        if not run_id:
            return None
        if run_artifacts:
            return in_place()
        # MLflow only for a store `storage` cannot open (the team server's proxied artifacts).
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            logged = mlflow.artifacts.list_artifacts(
                run_id=run_id, artifact_path=EVALUATION_ARTIFACT_DIR
            )
        except MlflowException as error:
            # A deleted run holds no evaluation; any other failure is the tracking server's.
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None
        if artifact not in {f.path for f in logged}:
            return None
        uri = f"runs:/{run_id}/{artifact}"
        return mlflow.artifacts.load_text(uri).encode("utf-8"), uri

    for read in (from_run, from_folder) if run_first else (from_folder, from_run):
        found = read()
        if found is not None:
            return found
    return None, ""
