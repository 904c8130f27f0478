"""Two services on one BENTOML_HOME keep their own metrics: starting the second one used to wipe
the first one's Prometheus files, and its `lifecycle_*` series vanished without an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving import metrics_dir
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_http_hostile import metric
from lifecycle_assets_tests.test_http_service import SERVICE, sample_records, serving


@pytest.mark.e2e
def test_a_second_service_leaves_the_first_ones_metrics(
    registered_champion: ModelRef, spec: ModelSpec, tmp_path: Path
) -> None:
    series = {"model_name": spec.name, "model_version": registered_champion.version}
    body = {"records": sample_records(spec, 3)}
    with (
        serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as first,
        httpx.Client(base_url=first, timeout=10) as client,
    ):
        assert client.post("/predict", json=body).status_code == 200
        assert metric(client.get("/metrics").text, "lifecycle_predictions_total", **series) == 3
        with serving(SERVICE, tmp_path, LIFECYCLE_MODEL_SOURCE="registry") as second:
            assert httpx.get(f"{second}/readyz", timeout=10).status_code == 200
            assert client.post("/predict", json=body).status_code == 200
            text = client.get("/metrics").text
            assert metric(text, "lifecycle_predictions_total", **series) == 6, text[-2000:]
            others = httpx.get(f"{second}/metrics", timeout=10).text
            assert metric(others, "lifecycle_predictions_total", **series) == 0
    # Both stopped: what the next service start removes is exactly their two folders.
    shared = Path(os.environ["BENTOML_HOME"]) / "prometheus_multiproc_dir"
    assert len(metrics_dir.remove_stale(shared)) == 2
    assert not list(shared.glob(f"{metrics_dir.PREFIX}*"))


def test_only_the_folders_of_gone_processes_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / f"{metrics_dir.PREFIX}{gone.stdout.strip()}").mkdir()
    (tmp_path / f"{metrics_dir.PREFIX}{os.getpid()}").mkdir()
    (tmp_path / "counter_1.db").write_bytes(b"")
    removed = metrics_dir.remove_stale(tmp_path)
    assert [p.name for p in removed] == [f"{metrics_dir.PREFIX}{gone.stdout.strip()}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_1.db",
        f"{metrics_dir.PREFIX}{os.getpid()}",
    ]
