"""The generated project's image and Kubernetes manifests, built and run for real.

Docker when an engine answers, else root podman with storage of its own and a local
stand-in for the python base image (containers.py), else every test here skips with the
reason. Containers use the host's network, bound to 127.0.0.1, and talk to the local
PostgreSQL; every container and pod is removed by its id, whatever the test's outcome.
"""

import json
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass

import containers
import pytest
import yaml
from conftest import bake, free_port

pytestmark = pytest.mark.slow

BASE_IMAGE = "python:3.11-slim-bookworm"  # what the Dockerfile's FROM names for Python 3.11
BAKES = {"psycopg": {}, "psycopg2": {"database_driver": "psycopg2"}}
PRESETS = ("sync", "gthread", "gevent", "asgi")
APP_UID = 10001
MIB = 2**20
# What the Dockerfile may add on top of its base: 83 MiB, then 90 with the production
# evidence's packages (sentry-sdk, prometheus-client, urllib3, certifi); the single-stage
# image added 90 MiB before them, with a gevent preset that could not start.
MAX_ADDED_MIB = 100


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    try:
        engine = containers.detect_engine(tmp_path_factory.mktemp("engine"))
        containers.ensure_base_image(engine, BASE_IMAGE)
    except containers.EngineUnavailable as exc:
        pytest.skip(str(exc))
    return engine


@dataclass(frozen=True)
class Image:
    driver: str
    tag: str
    id: str
    project: object  # the baked project's folder


@pytest.fixture(scope="module", params=BAKES, ids=[f"{driver} bake" for driver in BAKES])
def image(request, engine, tmp_path_factory):
    driver = request.param
    project = bake(tmp_path_factory.mktemp(f"image-{driver}"), **BAKES[driver])
    tag = f"localhost/template-test-{driver}:{secrets.token_hex(4)}"
    image_id = containers.build_image(engine, project, tag)
    yield Image(driver, tag, image_id, project)
    containers.remove_image(engine, image_id)


def service_environment(database_url, port, **extra):
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url,
        "PORT": str(port),
        # /metrics and /livez (the HEALTHCHECK's): a free port too, on the host's network.
        "METRICS_PORT": str(free_port()),
        # Host networking: the container's gunicorn would listen on every host address.
        "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_DEMO_ENDPOINTS": "true",
        **extra,
    }


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def test_the_image_adds_at_most_100_mib_to_its_base_and_no_pip(engine, image):
    base = containers.image_size(engine, BASE_IMAGE)
    size = containers.image_size(engine, image.id)
    added = (size - base) / MIB
    print(f"{image.driver} image: {size / MIB:.0f} MiB, {added:.0f} MiB on top of its base")
    assert added <= MAX_ADDED_MIB
    with containers.run_container(engine, image.tag, command=["python", "-m", "pip"]) as run:
        while run.is_running():
            time.sleep(0.1)
        assert run.exit_code() != 0, "pip is in the service's virtualenv"
        assert "No module named pip" in run.logs()


IN_FLIGHT = 50


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_serves_from_the_image_as_its_user_and_stops_cleanly(
    engine, image, database_url, preset
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = service_environment(database_url, port, GUNICORN_PRESET=preset)
    with containers.run_container(engine, image.tag, env=env) as container:
        started = time.monotonic()
        assert containers.wait_for_http(f"{url}/healthz", timeout=20, container=container) == 200
        print(f"{image.driver} {preset}: /healthz in {time.monotonic() - started:.1f} s")
        assert set(container.process_uids().values()) == {APP_UID}
        assert get(f"{url}/readyz")[0] == 200
        # The image's HEALTHCHECK gives a container its start period to pass. /livez fails
        # until the master's loop has read its workers' heartbeats once, up to a second after
        # boot: a CI run checked sooner.
        deadline = time.monotonic() + healthcheck_start_period_s(image.project)
        healthy = container.healthcheck()
        while not healthy and time.monotonic() < deadline:
            time.sleep(0.5)
            healthy = container.healthcheck()
        assert healthy, container.logs()

        # 50 requests in flight when the container is stopped, more than the sync preset's
        # workers: those waiting in the listen backlog are answered too before gunicorn exits.
        answers = []
        in_flight = [
            threading.Thread(target=lambda: answers.append(get(f"{url}/demo/io?ms=1000", 30)))
            for _ in range(IN_FLIGHT)
        ]
        for thread in in_flight:
            thread.start()
        time.sleep(0.5)
        stopping = time.monotonic()
        exit_code = container.stop(timeout=30)
        stopped_in = time.monotonic() - stopping
        for thread in in_flight:
            thread.join(timeout=10)
        logs = container.logs()
    assert exit_code == 0, logs
    assert stopped_in < 30, "stopped by SIGKILL, not by itself"
    assert [answer[0] for answer in answers] == [200] * IN_FLIGHT, logs
    assert f"Preset {preset}: " in logs
    assert "Traceback" not in logs


def healthcheck_start_period_s(project):
    """The Dockerfile's HEALTHCHECK --start-period, in seconds."""
    return int(re.search(r"--start-period=(\d+)s", (project / "Dockerfile").read_text()).group(1))


def kustomize():
    """The command that renders an overlay, or None."""
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(project, overlay):
    command = kustomize()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed (.ci/run installs kustomize)")
    overlay_dir = project / "deploy" / "kubernetes" / "overlays" / overlay
    result = subprocess.run(
        [*command, str(overlay_dir)], capture_output=True, text=True, timeout=60, check=True
    )
    return list(yaml.safe_load_all(result.stdout))


@pytest.fixture(scope="module")
def default_bake(tmp_path_factory):
    return bake(tmp_path_factory.mktemp("kubernetes"))


@pytest.mark.parametrize("preset", PRESETS)
def test_each_overlay_renders_valid_manifests_for_its_preset(default_bake, tmp_path, preset):
    documents = render(default_bake, preset)
    kinds = sorted(document["kind"] for document in documents)
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
    ]
    (config_map,) = (d for d in documents if d["kind"] == "ConfigMap")
    assert config_map["data"]["GUNICORN_PRESET"] == preset
    (deployment,) = (d for d in documents if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    limits = container["resources"]["limits"]
    assert limits["cpu"] == "2", "a whole number of CPUs, which the preset sizes from"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] > 25 + 5  # graceful_timeout + preStop
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "metrics": 9191}
    assert config_map["data"]["METRICS_BIND"] == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    env_from = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
    assert env_from["configMapRef"] == config_map["metadata"]["name"]
    assert env_from["secretRef"] == "my-service"

    rendered = tmp_path / f"{preset}.yaml"
    rendered.write_text(yaml.safe_dump_all(documents))
    validated = subprocess.run(
        ["kubernetes-validate", "--strict", str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr


def for_podman(documents, image, port, database_url):
    """The Deployment and its ConfigMap as `podman kube play` can run them on this host.

    What is changed, and why: one replica (every pod would bind the same host port); the
    host's network, where PostgreSQL is, so no port mappings, and probes on the port the
    service listens on; the Secret's two values as plain variables, since podman 4.3 fails
    to read a Kubernetes Secret for envFrom ("secret ... is not valid JSON").
    """
    played = []
    for document in documents:
        if document["kind"] == "ConfigMap":
            document["data"].update(
                {key: value for key, value in service_environment(database_url, port).items()
                 if key not in ("DJANGO_SECRET_KEY", "DATABASE_URL")}
            )  # fmt: skip
            played.append(document)
        elif document["kind"] == "Deployment":
            document["spec"]["replicas"] = 1
            (container,) = document["spec"]["template"]["spec"]["containers"]
            container["image"] = image.tag
            del container["ports"]
            for probe in ("startupProbe", "readinessProbe"):
                container[probe]["httpGet"]["port"] = port
            metrics_port = document_metrics_port(played)
            container["livenessProbe"]["httpGet"]["port"] = metrics_port
            container["envFrom"] = [ref for ref in container["envFrom"] if "secretRef" not in ref]
            container["env"] = [
                {"name": "DJANGO_SECRET_KEY", "value": secrets.token_urlsafe(50)},
                {"name": "DATABASE_URL", "value": database_url},
            ]
            played.append(document)
    return played


def document_metrics_port(played):
    """METRICS_PORT in the ConfigMap played (service_environment's free port)."""
    (config_map,) = (document for document in played if document["kind"] == "ConfigMap")
    return int(config_map["data"]["METRICS_PORT"])


def test_the_deployment_runs_under_podman_kube_play(
    engine, image, default_bake, database_url, tmp_path
):
    if not engine.is_podman:
        pytest.skip("kube play is podman's; with Docker, the image tests above stand alone")
    port = free_port()
    manifest = tmp_path / "kube.yaml"
    documents = for_podman(render(default_bake, "gevent"), image, port, database_url)
    manifest.write_text(yaml.safe_dump_all(documents))
    with containers.kube_played(engine, manifest) as pods:
        assert len(pods) == 1
        url = f"http://127.0.0.1:{port}"
        assert containers.wait_for_http(f"{url}/readyz", timeout=30) == 200
        assert get(f"{url}/demo/db?ms=10")[0] == 200
        pod = json.loads(engine.run("pod", "inspect", pods[0]).stdout)
        pod = pod[0] if isinstance(pod, list) else pod  # a list since podman 5
        (web,) = (c["Id"] for c in pod["Containers"] if not c["Name"].endswith("-infra"))
        inspected = json.loads(engine.run("inspect", "--type", "container", web).stdout)[0]
    assert inspected["Config"]["User"] == f"{APP_UID}:{APP_UID}"
    host = inspected["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["NanoCpus"] == 2 * 10**9 or host["CpuQuota"] == 2 * host["CpuPeriod"]
    assert host["Memory"] == 384 * MIB
