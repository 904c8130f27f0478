"""An `evaluation.json` edited in the artifact store cannot pass for the evaluated verdict.

Before, turning a failed gate into "passed" in the version's `evaluation.json` (the MLflow
artifacts folder, the report folder, or their S3 objects) made `lifecycle promote` move the
champion without `--override-gates`, and deleting the file did the same. The evaluation asset
now seals the verdict and the file's SHA-256 in the ledger's database (append-only), and every
reader of the verdicts checks the file against it. Real Dagster instance, MLflow registry and
ledger.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.cli import main
from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.ml import gates
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.refs import ModelRef, resolve
from lifecycle_assets.registry.verdicts import record_verdict, recorded_verdict
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets.storage import sha256_bytes as sha256_hex
from lifecycle_assets_tests.test_hot_swap import register_copy
from lifecycle_assets_tests.test_lifecycle_e2e import _run, _small

CHAMPION = config.CHAMPION_ALIAS


def _evaluation_files(settings: Settings, name: str, version: str) -> list[Path]:
    """The version's report-folder copy and its MLflow run's copy (artifacts on disk)."""
    ref = MlflowClient().get_model_version(name, version)
    run_root = MlflowClient().get_run(ref.run_id).info.artifact_uri.removeprefix("file://")
    return [
        settings.reports_dir / name / f"v{version}" / "evaluation.json",
        Path(run_root) / "evaluation" / "evaluation.json",
    ]


def _all_passed(path: Path) -> None:
    """What an attacker with write access to the artifact store does."""
    value = json.loads(path.read_text())
    for gate in value["gates"]:
        gate["passed"] = True
    path.write_text(json.dumps(value, indent=2))


@pytest.mark.e2e
def test_an_edited_verdict_refuses_promotion_override_or_not(
    spec: ModelSpec, lifecycle_env: Settings
) -> None:
    strict = _small(spec).model_copy(update={"gates": {"min_roc_auc": 0.99}})
    summary, instance = _run(strict)
    assert summary.model_version == "1" and not summary.promoted
    sealed = recorded_verdict(Ledger.default(), spec.name, "1")
    assert sealed is not None and not sealed.passed and gates.AUC_GATE in sealed.failed
    files = _evaluation_files(lifecycle_env, spec.name, "1")
    assert sha256_hex(files[1].read_bytes()) == sealed.sha256
    for path in files:
        _all_passed(path)
    found = sha256_hex(files[1].read_bytes())

    for extra in ([], ["--override-gates"]):
        result = CliRunner().invoke(main, ["promote", spec.name, "1", *extra])
        assert result.exit_code == 1, result.output
        line = " ".join(result.output.split())
        assert "evaluation/evaluation.json does not match the gate verdict the ledger" in line
        assert f"recorded sha256 {sealed.sha256}, found {found}" in line
        assert resolve(MlflowClient(), spec.name, CHAMPION) is None

    # `champion_model` alone (the UI's "Materialize selected") checks the same seal.
    job = build_definitions([_small(spec)]).resolve_implicit_global_asset_job_def()
    key = names.key(spec.name, names.CHAMPION_MODEL)
    result = job.execute_in_process(instance=instance, asset_selection=[key], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "does not match the gate verdict" in failure.step_failure_data.error.message
    assert resolve(MlflowClient(), spec.name, CHAMPION) is None

    # An audit (`lineage`, `trace`) shows the evaluation link broken, not the edited gates.
    audit = CliRunner().invoke(main, ["lineage", spec.name, "1"])
    assert audit.exit_code == 1
    assert f"recorded sha256 {sealed.sha256}, found {found}" in audit.output

    # Deleted: the record still says the version was evaluated, and failed.
    for path in files:
        path.unlink()
    result = CliRunner().invoke(main, ["promote", spec.name, "1"])
    assert result.exit_code == 1
    assert f"recorded sha256 {sealed.sha256}, found no file" in " ".join(result.output.split())


def test_a_version_evaluated_before_the_seal_promotes_as_before_and_says_so(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    v2 = register_copy(registered_champion)
    folder = lifecycle_env.reports_dir / v2.name / f"v{v2.version}"
    folder.mkdir(parents=True)
    verdict = {"name": gates.AUC_GATE, "passed": True, "description": "AUC 0.81 >= 0.7"}
    (folder / "evaluation.json").write_text(json.dumps({"gates": [verdict]}))
    result = CliRunner().invoke(main, ["promote", v2.name, v2.version])
    assert result.exit_code == 0, result.output
    line = " ".join(result.output.split())
    assert f"note: {v2.name} v{v2.version} was evaluated before gate verdicts were recorded" in line
    assert resolve(MlflowClient(), v2.name, CHAMPION).version == v2.version


def test_a_sealed_file_that_matches_promotes_without_a_note(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    v2 = register_copy(registered_champion)
    path = lifecycle_env.reports_dir / v2.name / f"v{v2.version}" / "evaluation.json"
    path.parent.mkdir(parents=True)
    verdict = {"name": gates.AUC_GATE, "passed": True, "description": "AUC 0.81 >= 0.7"}
    path.write_text(json.dumps({"gates": [verdict]}))
    record_verdict(
        Ledger.default(), v2.name, v2.version, sha256=sha256_hex(path.read_bytes()),
        gates=[verdict], file=str(path),
    )  # fmt: skip
    result = CliRunner().invoke(main, ["promote", v2.name, v2.version])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.output


def test_the_sqlite_verdict_record_is_append_only(lifecycle_env: Settings) -> None:
    ledger = Ledger.default()
    record_verdict(ledger, "m", "1", sha256="a" * 64, gates=[], file="f")
    conn = sqlite3.connect(ledger.path)
    for statement in ("DELETE FROM gate_verdicts", "UPDATE gate_verdicts SET passed = 0"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    conn.close()
    assert recorded_verdict(ledger, "m", "1").sha256 == "a" * 64


def test_the_canary_analysis_promotes_no_version_its_gates_or_its_seal_refuse(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    """Before, a canary whose gates failed (or whose verdict was edited) became champion when
    the live-traffic verdict said "promote": the analysis read no gate verdict at all."""
    import dagster as dg

    from lifecycle_assets.defs.assets.canary import apply_verdict
    from lifecycle_assets.ml.canary_analysis import CanaryVerdict, VariantStats
    from lifecycle_assets.registry.canary import set_canary

    v1, name, client = registered_champion, registered_champion.name, MlflowClient()
    v2 = register_copy(v1)
    path = lifecycle_env.reports_dir / name / f"v{v2.version}" / "evaluation.json"
    path.parent.mkdir(parents=True)
    verdict = {"name": gates.AUC_GATE, "passed": False, "description": "AUC 0.61 < 0.7"}
    path.write_text(json.dumps({"gates": [verdict]}))
    record_verdict(
        Ledger.default(), name, v2.version, sha256=sha256_hex(path.read_bytes()),
        gates=[verdict], file=str(path),
    )  # fmt: skip
    set_canary(client, name, v2.version, 0.1, reason="try v2", actor="pytest")

    def stats(version: str) -> VariantStats:
        return VariantStats(10, (version,), 0.0, 0.5, 1.0, 0, None, None)

    promote = CanaryVerdict("promote", ("better",), stats(v1.version), stats(v2.version))
    action = apply_verdict(client, spec, promote, "run-1", Ledger.default(), lifecycle_env)
    assert action.startswith(
        f"nothing: canary v{v2.version} failed its gates (auc_meets_minimum"
    ), action
    assert resolve(client, name, CHAMPION).version == v1.version

    _all_passed(path)
    with pytest.raises(dg.Failure, match="does not match the gate verdict the ledger recorded"):
        apply_verdict(client, spec, promote, "run-1", Ledger.default(), lifecycle_env)
    assert resolve(client, name, CHAMPION).version == v1.version


def test_the_seal_is_read_from_the_callers_ledger(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec, tmp_path: Path
) -> None:
    """Before, `check_seal` built its own ledger from the settings, so a caller holding another
    one (the canary analysis is handed its ledger) had the seal looked up in a database it did
    not use: no record there, the edited file was read unchecked and the canary promoted."""
    import dagster as dg

    from lifecycle_assets.defs.assets.canary import apply_verdict
    from lifecycle_assets.ml.canary_analysis import CanaryVerdict, VariantStats
    from lifecycle_assets.registry.canary import set_canary

    ledger = Ledger(tmp_path / "team" / "ledger.db")  # not the one the settings name
    v1, name, client = registered_champion, registered_champion.name, MlflowClient()
    v2 = register_copy(v1)
    path = lifecycle_env.reports_dir / name / f"v{v2.version}" / "evaluation.json"
    verdict = {"name": gates.AUC_GATE, "passed": False, "description": "AUC 0.61 < 0.7"}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gates": [verdict]}))
    record_verdict(
        ledger, name, v2.version, sha256=sha256_hex(path.read_bytes()), gates=[verdict],
        file=str(path),
    )  # fmt: skip
    _all_passed(path)
    set_canary(client, name, v2.version, 0.1, reason="try v2", actor="pytest", ledger=ledger)

    def stats(version: str) -> VariantStats:
        return VariantStats(10, (version,), 0.0, 0.5, 1.0, 0, None, None)

    promote = CanaryVerdict("promote", ("better",), stats(v1.version), stats(v2.version))
    with pytest.raises(dg.Failure, match="does not match the gate verdict the ledger recorded"):
        apply_verdict(client, spec, promote, "run-1", ledger, lifecycle_env)
    assert resolve(client, name, CHAMPION).version == v1.version


@pytest.mark.e2e
def test_a_lost_seal_refuses_a_version_registered_to_be_sealed(
    spec: ModelSpec, lifecycle_env: Settings
) -> None:
    """Before, when the verdict record was lost (the table dropped, the ledger restored from an
    older copy), a version that had been evaluated and sealed read as one "evaluated before
    gate verdicts were recorded": its file, which anyone with write access to the artifacts
    could have edited, was trusted with a note. A version its training run registered to be
    sealed (`verdict_sealed`) is now refused, and its evaluation link shows broken."""
    summary, _ = _run(_small(spec))
    assert summary.promoted and summary.model_version == "1", summary.failure
    tags = MlflowClient().get_model_version(spec.name, "1").tags
    assert tags[config.TAG_VERDICT_SEALED] == "true"
    ledger = Ledger.default()
    assert recorded_verdict(ledger, spec.name, "1") is not None
    with sqlite3.connect(ledger.path) as conn:
        conn.execute("DROP TABLE gate_verdicts")
    result = CliRunner().invoke(main, ["promote", spec.name, "1"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"has no gate verdict in the ledger, though {spec.name} v1 was registered" in said
    assert "evaluated before" not in said
    audit = CliRunner().invoke(main, ["lineage", spec.name, "1"])
    assert audit.exit_code == 1 and "the record is lost" in " ".join(audit.output.split())
