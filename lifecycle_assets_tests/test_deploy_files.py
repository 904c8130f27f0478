"""The deployment files agree with the code: no Docker engine here, so they are parsed and every
image, command, port and variable is checked against what the settings and the servers read."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import AliasChoices

from lifecycle_assets.settings import LifecycleSettings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
LIFECYCLE_IMAGE = "lifecycle-assets"
# Variables read by something other than the settings object, and who reads them.
THIRD_PARTY = {
    "AWS_ACCESS_KEY_ID": "boto3/s3fs",
    "AWS_SECRET_ACCESS_KEY": "boto3/s3fs",
    "AWS_DEFAULT_REGION": "boto3/s3fs",
    "MLFLOW_S3_ENDPOINT_URL": "the MLflow server's artifact proxy",
    "DAGSTER_HOME": "Dagster",
    "DAGSTER_PG_URL": "deploy/dagster/dagster.yaml",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "the MLflow server",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "the MLflow server",
    "MLFLOW_WEBHOOK_CACHE_TTL": "the MLflow server",
}


def settings_names() -> set[str]:
    names = set()
    for field in LifecycleSettings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif alias:
            names.add(str(alias))
    return names


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or {"http": 80, "https": 443}[parts.scheme]


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1]) for p in service.get("ports", [])}


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_every_variable_is_one_the_code_or_a_server_reads(compose) -> None:
    known = settings_names() | set(THIRD_PARTY)
    env = compose["x-team-env"]
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        if service.get("image", "").startswith(LIFECYCLE_IMAGE):
            unknown = set(environment) - known
            assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
    settings = LifecycleSettings.from_env({k: str(v) for k, v in env.items()})
    assert settings.team and settings.mlflow_server and settings.celery_broker
    example = (REPO / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert settings_names() <= documented, "every setting is listed in .env.example"
    dagster_yaml = (DEPLOY / "dagster" / "dagster.yaml").read_text()
    assert "env: DAGSTER_PG_URL" in dagster_yaml and env["DAGSTER_PG_URL"].startswith(
        "postgresql+psycopg2://"
    )


def test_urls_point_at_the_services_that_serve_them(compose) -> None:
    env, services = compose["x-team-env"], compose["services"]
    for variable, service, port in (
        ("MLFLOW_TRACKING_URI", "mlflow", 5000),
        ("AWS_ENDPOINT_URL", "minio", 9000),
        ("MLFLOW_S3_ENDPOINT_URL", "minio", 9000),
        ("LIFECYCLE_CELERY_BROKER", "rabbitmq", 5672),
        ("DATABASE_URL", "postgres", 5432),
        ("DAGSTER_PG_URL", "postgres", 5432),
        ("LIFECYCLE_DAGSTER_URL", "dagster-webserver", 3000),
    ):
        assert _port(env[variable]) == (service, port), variable
        assert port in _published(services[service]), f"{service} does not publish {port}"
    assert _flag(services["mlflow"]["command"], "--port") == "5000"
    assert _flag(services["dagster-webserver"]["command"], "-p") == "3000"
    bucket = urlsplit(env["LIFECYCLE_STORAGE_URL"]).hostname
    assert f"mb --ignore-existing lake/{bucket}" in services["minio-bucket"]["command"][0]
    init = (DEPLOY / "postgres" / "init.sql").read_text()
    for url in (env["DATABASE_URL"], env["DAGSTER_PG_URL"]):
        database = urlsplit(url).path.lstrip("/")
        created = services["postgres"]["environment"]["POSTGRES_DB"] == database
        assert created or f"CREATE DATABASE {database}" in init, database
    worker = services["celery-worker"]["command"]
    assert _flag(worker, "-q") == env["LIFECYCLE_CELERY_QUEUE"]
    assert (REPO / _flag(worker, "-y")).is_file()
    serve = services["model-service"]["command"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"model-service:{_flag(serve, '--port')}"]
    assert int(_flag(serve, "--port")) in _published(services["model-service"])
    # Unshipped prediction log segments outlive the container (LIFECYCLE_HOME on a volume).
    mounts = {v.split(":")[1] for v in services["model-service"]["volumes"]}
    assert compose["x-team-env"]["LIFECYCLE_HOME"] in mounts


def test_the_project_image_runs_commands_it_installs(compose) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "-c constraints.txt ." in dockerfile, "pins come from pyproject and constraints only"
    home = re.search(r"ENV DAGSTER_HOME=(\S+)", dockerfile).group(1)
    assert compose["x-team-env"]["DAGSTER_HOME"] == home
    assert 'cp deploy/dagster/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in dockerfile
    # The package is installed into site-packages, so the Bento is built from the image's own
    # copy of the bentofile and its pins (settings.project_dir), not from beside the code.
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.MULTILINE).group(1)
    assert re.search(r"ENV LIFECYCLE_PROJECT_DIR=(\S+)", dockerfile).group(1) == workdir
    copied = " ".join(re.findall(r"^COPY (.+) \./?$", dockerfile, re.MULTILINE))
    assert "bentofile.yaml" in copied and "constraints.txt" in copied
    exposed = {int(p) for p in re.search(r"EXPOSE ([\d ]+)", dockerfile).group(1).split()}
    for name, service in compose["services"].items():
        assert service.get("image"), f"{name} has no image"
        if not service["image"].startswith(LIFECYCLE_IMAGE):
            continue
        assert (REPO / service["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        executable = service["command"][0]
        assert Path(sys.executable).with_name(executable).exists(), f"{name}: {executable}"
        assert _published(service) <= exposed, name


def _k8s_documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name.startswith("values-"):
            continue
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def test_kubernetes_manifests_and_helm_values_agree_with_the_image_and_settings() -> None:
    docs = _k8s_documents()
    config_maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    known = settings_names() | set(THIRD_PARTY)
    for data in config_maps.values():
        assert set(data) <= known, sorted(set(data) - known)
    values = yaml.safe_load((DEPLOY / "k8s" / "values-dagster.yaml").read_text())
    (code,) = values["dagster-user-deployments"]["deployments"]
    image = f"{code['image']['repository']}:{code['image']['tag']}"
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    module = workspace["load_from"][0]["python_module"]["module_name"]
    assert code["dagsterApiGrpcArgs"] == ["--module-name", module]
    for name in [m["name"] for m in code["envConfigMaps"]]:
        assert name in config_maps, name
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == image, deployment["metadata"]["name"]
        assert Path(sys.executable).with_name(container["command"][0]).exists()
        port = container["ports"][0]["containerPort"]
        assert _flag(container["command"], "--port") == str(port)
        service = services[deployment["metadata"]["name"]]
        assert service["spec"]["ports"][0]["port"] == port
        refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
        assert all(ref in config_maps for ref in refs)
    team = config_maps["lifecycle-team-env"]
    assert _port(team["MLFLOW_TRACKING_URI"]) == ("mlflow", 5000)


def _webserver_service(values_text: str) -> tuple[str, int]:
    """The Service the Dagster chart creates for its webserver: `dagster.webserver.fullname` of
    helm/dagster/templates/helpers/_helpers.tpl (release, dash, nameOverride or "webserver",
    cut to 63) and `dagsterWebserver.service.port` (default 80), as the values and the
    documented `helm upgrade --install <release>` name them."""
    release = re.search(r"helm upgrade --install (\S+) dagster/dagster", values_text).group(1)
    webserver = yaml.safe_load(values_text).get("dagsterWebserver", {})
    name = f"{release}-{webserver.get('nameOverride') or 'webserver'}"[:63].rstrip("-")
    return name, int(webserver.get("service", {}).get("port") or 80)


def _runs_the_cli(container: dict[str, Any]) -> bool:
    command = container.get("command", [])
    return command[:1] == ["lifecycle"] and bool({"run", "monitor"} & set(command))


def test_the_cli_in_kubernetes_submits_to_the_charts_webserver() -> None:
    """LIFECYCLE_DAGSTER_URL names the webserver Service of the chart's release, passes the
    settings' validation unchanged, and reaches every pod that runs `lifecycle run`/`monitor`."""
    values_text = (DEPLOY / "k8s" / "values-dagster.yaml").read_text()
    values = yaml.safe_load(values_text)
    docs = _k8s_documents()
    (team,) = [d["data"] for d in docs if d["kind"] == "ConfigMap"]
    url = team["LIFECYCLE_DAGSTER_URL"]
    assert _port(url) == _webserver_service(values_text), url
    assert _webserver_service(values_text) == ("dagster-dagster-webserver", 80)
    secrets = {"DATABASE_URL": "postgresql://lifecycle@postgres:5432/lifecycle"}
    settings = LifecycleSettings.from_env({**team, **secrets})
    assert settings.team and settings.dagster_url == url, "the form the settings keep"
    with pytest.raises(ValueError, match="LIFECYCLE_DAGSTER_URL"):
        LifecycleSettings.from_env({**team, **secrets, "LIFECYCLE_DAGSTER_URL": url[7:]})
    # Where the variable must reach: the code location and each run's pod (they share the
    # ConfigMap with everything else), and every container that runs the CLI's run commands.
    (code,) = values["dagster-user-deployments"]["deployments"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for env_config_maps in (code["envConfigMaps"], launcher["envConfigMaps"]):
        assert {"name": "lifecycle-team-env"} in env_config_maps
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    pods += [
        d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in docs if d["kind"] == "CronJob"
    ]
    clis = [c for pod in pods for c in pod["containers"] if _runs_the_cli(c)]
    assert clis, "a pod of the manifests runs `lifecycle run`"
    for container in clis:
        refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
        assert "lifecycle-team-env" in refs, container["name"]
        image = f"{code['image']['repository']}:{code['image']['tag']}"
        assert container["image"] == image, container["name"]
        assert Path(sys.executable).with_name(container["command"][0]).exists()
