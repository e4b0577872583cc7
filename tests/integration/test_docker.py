"""The image built from this checkout runs: as the non-root user ``edigw``, with its ``var``
volume, it answers ``/healthz`` and the console's login page, reports healthy, and processes
an order dropped into the inbox of its volume. The compose file is valid.

Docker plumbing (daemon, base image) is in ``tests/integration/docker_env.py``. Cold (no base
image, empty build cache) about 2 min; warm about 30 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from gateway.config import BrokerSettings
from tests.integration.docker_env import (
    ROOT,
    Docker,
    base_image,
    docker,
    edigw_image,
    service_images,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
__all__ = ["base_image", "docker", "edigw_image", "service_images"]  # fixtures, by name

ORDER = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"  # example-retail's


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode()


def _wait(what: str, check, timeout: float, logs) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; container logs:\n{logs()}")
        time.sleep(0.5)


@pytest.fixture
def container(docker: Docker, edigw_image: str) -> Iterator[tuple[str, str]]:
    """A gateway container with a fresh named volume; its name and base URL."""
    name = f"edigw-test-{uuid.uuid4().hex[:8]}"
    docker.run("volume", "create", name)
    try:
        docker.run("run", "-d", "--name", name, "-p", "127.0.0.1::8080",
                   "-v", f"{name}:/var/lib/edigw", edigw_image)
        port = docker.run("port", name, "8080/tcp").stdout.splitlines()[0].rsplit(":", 1)[1]
        yield name, f"http://127.0.0.1:{port}"
    finally:
        docker.run("rm", "-f", "-v", name, check=False)
        docker.run("volume", "rm", "-f", name, check=False)


def test_the_image_serves_and_ingests(docker: Docker, container: tuple[str, str]) -> None:
    name, base = container

    def logs() -> str:
        done = docker.run("logs", name, check=False)
        return (done.stdout + done.stderr)[-4000:]

    _wait("/healthz", lambda: _get(base + "/healthz")[0] == 200, 90, logs)
    status, ctype, body = _get(base + "/login")
    assert status == 200 and ctype.startswith("text/html") and 'name="password"' in body
    assert docker.run("exec", name, "id", "-u").stdout.strip() != "0"
    assert docker.run("exec", name, "id", "-un").stdout.strip() == "edigw"

    # Dropped as the gateway's user would: written under a hidden name, then renamed.
    docker.run("exec", "-i", name, "sh", "-c",
               "cat > /var/lib/edigw/inbox/.order.edi && "
               "mv /var/lib/edigw/inbox/.order.edi /var/lib/edigw/inbox/order.edi",
               input=ORDER.read_text())
    log = _wait("the order processed",
                lambda: (out := docker.run("exec", name, "edigw", "log").stdout)
                and "PROCESSED" in out and out, 60, logs)
    assert "example-retail" in str(log) and "order.edi" in str(log)
    assert docker.run("exec", name, "ls", "/var/lib/edigw/processed").stdout.split() == [
        "order.edi"]
    assert docker.run("exec", name, "ls", "/var/lib/edigw/inbox").stdout.split() == []

    def health() -> str:
        state = json.loads(docker.run("inspect", name).stdout)[0]["State"]
        return str(state.get("Health", {}).get("Status"))
    _wait("the HEALTHCHECK to pass", lambda: health() == "healthy", 60, logs)


# -- compose --------------------------------------------------------------------------------

def _compose(*args: str, env: dict[str, str],
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("docker-compose is required in CI (apt-get install docker-compose)")
        pytest.skip("docker-compose not installed (apt-get install docker-compose)")
    return subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_the_compose_file_is_valid() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDIGW_")}
    env.update(EDIGW_BROKER_PASSWORD="not-a-real-one-either",
               EDIGW_RABBITMQ_COOKIE="not-a-real-cookie")
    refused = _compose("config", "-q", env=env)
    assert refused.returncode != 0 and "EDIGW_DB_PASSWORD" in refused.stderr

    env["EDIGW_DB_PASSWORD"] = "not-a-real-one"
    done = _compose("config", env=env)
    assert done.returncode == 0, done.stderr
    import yaml

    config = yaml.safe_load(done.stdout)
    services = config["services"]
    assert {"postgres", "rabbit1", "rabbit2", "rabbit3"} <= set(services)
    gateways = [s for s in services.values() if s.get("build") or "edigw" in str(s.get("image"))]
    replicas = sum(s.get("deploy", {}).get("replicas", 1) for s in gateways)
    assert replicas >= 2
    published = [str(p) for s in services.values() for p in s.get("ports", [])]
    assert not any(":5672" in p or ":15672" in p for p in published), published
    for gateway in gateways:
        env_of = gateway["environment"]
        assert "not-a-real-one" in env_of["EDIGW_STORE_URL"]
        assert env_of["EDIGW_BROKER_URLS"].count("amqp://") == 3
        assert "healthcheck" in gateway
        assert any("/var/lib/edigw" in str(v) for v in gateway["volumes"])
    for service in ("postgres", "rabbit1", "rabbit2", "rabbit3"):
        assert "healthcheck" in services[service], service


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_compose_stack_runs(docker: Docker, edigw_image: str,
                                service_images: dict[str, str]) -> None:
    """PostgreSQL, the three-node RabbitMQ cluster and both gateways come up healthy; an order
    dropped into the shared inbox reaches the quorum queue erp.orders. About 90 s."""
    project = f"edigwtest{uuid.uuid4().hex[:6]}"
    ports = [_free_port(), _free_port()]
    env = {k: v for k, v in docker.env.items() if not k.startswith("EDIGW_")}
    env.update(service_images, EDIGW_IMAGE=edigw_image,
               EDIGW_DB_PASSWORD=uuid.uuid4().hex, EDIGW_BROKER_PASSWORD=uuid.uuid4().hex,
               EDIGW_RABBITMQ_COOKIE=uuid.uuid4().hex,
               EDIGW_HTTP_PORT1=str(ports[0]), EDIGW_HTTP_PORT2=str(ports[1]))
    if "queue_type" not in BrokerSettings.model_fields:  # an edigw before [broker] queue_type
        env["EDIGW_BROKER_QUEUE_TYPE"] = ""
    gateways = [f"{project}_edigw1_1", f"{project}_edigw2_1"]

    def logs() -> str:
        return "\n".join(docker.run("logs", "--tail", "30", name, check=False).stderr
                         for name in gateways)
    try:
        up = _compose("-p", project, "up", "-d", "--no-build", env=env, timeout=600)
        assert up.returncode == 0, up.stdout + up.stderr
        for port in ports:
            _wait("/readyz", lambda port=port: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
                  90, logs)
            status, ctype, _ = _get(f"http://127.0.0.1:{port}/login")
            assert status == 200 and ctype.startswith("text/html")
        cluster = docker.run("exec", f"{project}_rabbit1_1", "rabbitmqctl", "-q",
                             "cluster_status", "--formatter", "json").stdout
        assert len(json.loads(cluster)["running_nodes"]) == 3
        docker.run("exec", "-i", gateways[0], "sh", "-c",
                   "cat > inbox/.order.edi && mv inbox/.order.edi inbox/order.edi",
                   input=ORDER.read_text())

        def on_queue() -> list[str] | None:
            out = docker.run("exec", f"{project}_rabbit2_1", "rabbitmqctl", "-q", "list_queues",
                             "name", "type", "messages").stdout
            row = next((line.split() for line in out.splitlines()
                        if line.startswith("erp.orders\t")), None)
            return row if row and int(row[2]) >= 1 else None
        row = _wait("the order on erp.orders", on_queue, 60, logs)
        assert isinstance(row, list) and row[1] == "quorum"
        time.sleep(2)  # a second instance taking the same file would have done so by now
        # the rows under the header (the footer says how many of how many)
        log = [line for line in docker.run("exec", gateways[1], "edigw", "log"
                                           ).stdout.splitlines()[1:] if "order.edi" in line]
        assert len(log) == 1 and "PUBLISHED" in log[0], log  # one instance took the file
        assert on_queue() == ["erp.orders", "quorum", "1"]
    finally:
        _compose("-p", project, "down", "-v", "--remove-orphans", "-t", "5", env=env, timeout=300)
