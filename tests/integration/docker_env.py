"""Docker for the image tests: a daemon, a base image with Python, image builds.

No image registry is reachable from the test machines, so nothing is pulled:

- the daemon is ``$DOCKER_HOST`` or the system's when one answers; else, as root with Debian's
  ``docker.io`` installed, one is started for the session with its data under
  ``$EDIGW_DOCKER_ROOT`` (default ``/var/cache/edigw-docker``) and stopped at the end (its
  images stay there, so the next run builds from its cache);
- the base image is ``$EDIGW_DOCKER_BASE`` when set (``python:3.11-slim`` where a registry
  is), else ``local/python:bookworm``, made once with ``debootstrap`` (Debian bookworm
  minbase with python3, python3-venv and python3-pip) and kept as a tarball in the same
  folder (``docker import`` of it takes seconds).

Behind a TLS-intercepting proxy, the certificates of ``/usr/local/share/ca-certificates``
(or the PEM file ``$EDIGW_DOCKER_EXTRA_CA``) are passed to the build as ``EXTRA_CA_CERTS``.

When Docker cannot be made to run, the tests skip with the reason, except under ``CI=true``,
where they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDIGW_DOCKER_ROOT", "/var/cache/edigw-docker"))
LOCAL_BASE = "local/python:bookworm"
DEBIAN_MIRROR = os.environ.get("EDIGW_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def unavailable(reason: str) -> None:
    """Skip (fail under CI=true) because Docker cannot be used here."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Docker is required in CI: {reason}")
    pytest.skip(f"Docker not available: {reason}")


class Docker:
    """The ``docker`` client bound to one daemon."""

    def __init__(self, host: str | None) -> None:
        self.env = dict(os.environ)
        if host:
            self.env["DOCKER_HOST"] = host
        self.host = host

    def run(self, *args: str, check: bool = True, timeout: float = 600,
            input: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
        text_input = input.decode() if isinstance(input, bytes) else input
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=text_input)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done

    def answers(self) -> bool:
        try:
            return self.run("info", "--format", "{{.ServerVersion}}", check=False,
                            timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False).returncode == 0

    def build(self, tag: str, context: Path, *, dockerfile: Path | None = None,
              build_args: dict[str, str] | None = None) -> None:
        args = ["build", "--network", "host", "-t", tag]
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        for name, value in (build_args or {}).items():
            args += ["--build-arg", f"{name}={value}"]
        self.run(*args, str(context), timeout=1800)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _start_daemon() -> tuple[Docker, subprocess.Popen[bytes] | None]:
    """A daemon of our own under CACHE (one already running there is reused)."""
    if shutil.which("dockerd") is None:
        unavailable("no daemon answers and dockerd is not installed "
                    "(apt-get install docker.io)")
    if os.geteuid() != 0:
        unavailable("no daemon answers and starting dockerd needs root")
    sock = CACHE / "sock"
    docker = Docker(f"unix://{sock}")
    if docker.answers():
        return docker, None
    with _locked("dockerd"):
        if docker.answers():
            return docker, None
        log = (CACHE / "dockerd.log").open("ab")
        proc = subprocess.Popen(
            ["dockerd", "--data-root", str(CACHE / "data"), "--exec-root", str(CACHE / "exec"),
             "-H", f"unix://{sock}", "--pidfile", str(CACHE / "dockerd.pid")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while not docker.answers():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                tail = (CACHE / "dockerd.log").read_text(errors="replace")[-2000:]
                unavailable(f"dockerd did not start (see {CACHE / 'dockerd.log'}):\n{tail}")
            time.sleep(0.5)
    return docker, proc


def _base_image(docker: Docker) -> str:
    """``$EDIGW_DOCKER_BASE``, else ``local/python:bookworm`` (made when missing)."""
    wanted = os.environ.get("EDIGW_DOCKER_BASE")
    if wanted:
        return wanted
    if docker.has_image(LOCAL_BASE):
        return LOCAL_BASE
    with _locked("base"):
        if docker.has_image(LOCAL_BASE):
            return LOCAL_BASE
        tarball = CACHE / "python-bookworm.tar"
        if not tarball.exists():
            if shutil.which("debootstrap") is None or os.geteuid() != 0:
                unavailable(f"no base image {LOCAL_BASE}, and making one needs root and "
                            "debootstrap (apt-get install debootstrap)")
            rootfs = CACHE / "rootfs-bookworm"
            shutil.rmtree(rootfs, ignore_errors=True)
            done = subprocess.run(
                ["debootstrap", "--variant=minbase",
                 "--include=python3,python3-venv,python3-pip", "bookworm", str(rootfs),
                 DEBIAN_MIRROR], capture_output=True, text=True, timeout=1200)
            if done.returncode != 0:
                unavailable(f"debootstrap failed: {done.stdout[-1500:]}{done.stderr[-1500:]}")
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
            shutil.rmtree(rootfs, ignore_errors=True)
        with tarball.open("rb") as fh:
            done = subprocess.run(["docker", "import", "-", LOCAL_BASE], stdin=fh,
                                  env=docker.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
    return LOCAL_BASE


def extra_ca_certs() -> str:
    """PEM text of the machine's extra CA certificates (a TLS-intercepting proxy's), or ''."""
    given = os.environ.get("EDIGW_DOCKER_EXTRA_CA")
    files = [Path(given)] if given else sorted(
        Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    return "".join(f.read_text() for f in files if f.is_file())


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """A Docker daemon that answers (see the module's docstring)."""
    if shutil.which("docker") is None:
        unavailable("the docker client is not installed (apt-get install docker.io)")
    proc = None
    found = Docker(os.environ.get("DOCKER_HOST"))
    if not found.answers():
        found, proc = _start_daemon()
    yield found
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def base_image(docker: Docker) -> str:
    """The BASE build argument: an image with python3 (>= 3.11), venv and pip."""
    return _base_image(docker)


@pytest.fixture(scope="session")
def edigw_image(docker: Docker, base_image: str) -> str:
    """The gateway's image, built from this checkout's Dockerfile."""
    tag = "edigw-test:latest"
    docker.build(tag, ROOT, build_args={"BASE": base_image, "EXTRA_CA_CERTS": extra_ca_certs()})
    # Earlier builds' untagged stages: kept a day as the build cache, then removed.
    docker.run("image", "prune", "-f", "--filter", "until=24h", check=False)
    return tag


@pytest.fixture(scope="session")
def service_images(docker: Docker, base_image: str) -> dict[str, str]:
    """PostgreSQL and RabbitMQ images for docker-compose.yml, built from Debian's packages
    (docker/Dockerfile.postgres, docker/Dockerfile.rabbitmq) on the base image; the compose
    file's ``EDIGW_POSTGRES_IMAGE`` and ``EDIGW_RABBITMQ_IMAGE``."""
    images = {"EDIGW_POSTGRES_IMAGE": ("local/postgres:15", "Dockerfile.postgres"),
              "EDIGW_RABBITMQ_IMAGE": ("local/rabbitmq:3", "Dockerfile.rabbitmq")}
    for tag, dockerfile in images.values():
        docker.build(tag, ROOT / "docker", dockerfile=ROOT / "docker" / dockerfile,
                     build_args={"BASE": base_image})
    return {var: tag for var, (tag, _) in images.items()}
