"""The Bento's packages are pinned from constraints.txt alone, and in team mode `bento_service`
exports the Bento to object storage, from where any host imports the same Bento."""

from __future__ import annotations

import uuid
from pathlib import Path

import bentoml
import boto3
import dagster as dg
import pytest
import yaml

from lifecycle_assets import config, storage
from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.defs.resources import LifecycleResource, MlflowResource
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.serving.bento_requirements import (
    dependency_closure,
    pinned_requirements,
    read_constraints,
)
from lifecycle_assets.serving.bento_store import (
    BENTOFILE,
    ExportedBento,
    build_bento,
    import_from_storage,
)
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import S3Server, moto_s3  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"


def _bentofile_packages() -> list[str]:
    return yaml.safe_load((ROOT / BENTOFILE).read_text())["python"]["packages"]


def test_the_built_bento_pins_the_service_closure_from_constraints() -> None:
    names_only = _bentofile_packages()
    pinned = pinned_requirements(names_only, CONSTRAINTS)
    constraint_lines = set(read_constraints(CONSTRAINTS).values())
    assert set(pinned) <= constraint_lines, "every version comes from constraints.txt"
    # The closure, not only the names: a transitive dependency is pinned too.
    assert len(pinned) == len(dependency_closure(names_only)) > len(names_only)
    assert any(line.startswith("aiobotocore==") for line in pinned), "s3fs's own dependency"
    assert not any(line.startswith("dagster==") for line in pinned), "the service never runs it"

    bento = bentoml.get(build_bento(ROOT, []))
    written = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text()
    assert {line for line in written.splitlines() if line.strip()} == set(pinned)


def test_a_versioned_name_or_an_unpinned_dependency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"versions belong in constraints\.txt"):
        pinned_requirements(["polars==2.1.0"], CONSTRAINTS)
    partial = tmp_path / "constraints.txt"
    partial.write_text("polars==2.1.0\n")
    with pytest.raises(ValueError, match="pins no version of"):
        pinned_requirements(["polars"], partial)


@pytest.mark.team
def test_bento_service_exports_its_bento_to_object_storage(
    moto_s3: S3Server,  # noqa: F811
    registered_champion: ModelRef,
    lifecycle_env: Settings,
    spec: ModelSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"team-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LIFECYCLE_STORAGE_URL", moto_s3.url(prefix))
    defs = build_definitions([spec])
    asset = defs.resolve_assets_def(names.key(spec.name, names.BENTO_SERVICE))
    output = asset(
        context=dg.build_asset_context(),
        mlflow=MlflowResource(),
        lifecycle=LifecycleResource(),
        champion_model={"champion": registered_champion.to_dict(), "previous": None},
    )
    value, metadata = output.value, output.metadata
    bento_tag, url, sha256 = value["bento_tag"], value["bento_url"], value["bento_sha256"]
    expected = f"s3://{moto_s3.bucket}/{prefix}/bentos/{bento_tag.replace(':', '-')}.bento"
    assert url == expected
    assert metadata["bento_url"].value == url and metadata["bento_sha256"].value == sha256
    tags = configure_mlflow(lifecycle_env).get_model_version(spec.name, value["model_version"]).tags
    assert tags[config.TAG_BENTO_URL] == url and tags[config.TAG_BENTO_SHA256] == sha256

    key = url.removeprefix(f"s3://{moto_s3.bucket}/")
    head = boto3.client("s3", endpoint_url=moto_s3.endpoint_url).head_object(
        Bucket=moto_s3.bucket, Key=key
    )
    assert head["ContentLength"] > 0

    # Another host: the Bento is not in its store until imported from object storage.
    bentoml.delete(bento_tag)
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.get(bento_tag)
    assert import_from_storage(ExportedBento(url, sha256)) == bento_tag
    imported = bentoml.get(bento_tag)
    assert [str(m.tag) for m in imported.info.all_models] == value["model_tags"]
    assert import_from_storage(ExportedBento(url, sha256)) == bento_tag, (
        "a second import is a no-op"
    )

    storage.write_atomic(url, b"not the Bento that was built")
    with pytest.raises(RuntimeError, match="expected"):
        import_from_storage(ExportedBento(url, sha256))
