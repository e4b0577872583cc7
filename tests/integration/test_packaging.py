"""The built wheel holds everything ``edigw serve`` needs.

The wheel is built from a copy of the source tree (what ``.dockerignore`` lets into an image),
installed with its dependencies into a fresh venv that does not see this checkout or the test
venv, and run from an empty folder with the embedded defaults: ``/healthz`` answers, the
console's login page is served with its stylesheet, the shipped mappings and XSD schemas are
the wheel's own. Takes about 30 s (most of it pip installing the dependencies).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: Left out of the copy the wheel is built from (as .dockerignore leaves them out of images).
IGNORED = shutil.ignore_patterns(".venv", ".git", "var", "build", "dist", "*.egg-info",
                                 "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache",
                                 ".mypy_cache", "node_modules", "tests", "bench")


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read().decode()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel (not editable) and its dependencies; its ``bin`` folder."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", source)
    [wheel] = (tmp / "dist").glob("edigw-*.whl")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", venv)  # no --system-site-packages: nothing leaks in
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheel)
    return venv / "bin"


def test_the_wheel_is_what_runs(installed: Path) -> None:
    python = installed / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .strip())
    probe = ("import gateway, gateway.shipped as s, gateway.formats.xml.schemas as x;"
             "print(gateway.__file__); print(gateway.__version__);"
             "print(s.shipped('mappings')); print(len(x.known_schemas()))")
    empty = installed.parent.parent / "probe"
    empty.mkdir()
    where, version, mappings, schemas = _run(python, "-c", probe, cwd=empty).split()
    assert Path(where).is_relative_to(site), where
    assert Path(mappings).is_relative_to(site / "gateway" / "_shipped"), mappings
    assert len(list(Path(mappings).rglob("*.yaml"))) >= 20
    assert int(schemas) >= 10  # UBL, CII, Factur-X, Order-X from the wheel's copy
    assert _run(installed / "edigw", "--version").strip() == f"edigw {version}"
    assert version != "0+unknown"


def test_serve_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDIGW_")}
    env.update(EDIGW_HTTP_PORT=str(port),  # the broker down: serve starts all the same
               EDIGW_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{_free_port()}/%2F")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([installed / "edigw", "serve"], cwd=tmp_path, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                status, _, _ = _get(base + "/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        status, ctype, body = _get(base + "/login")
        assert status == 200 and ctype.startswith("text/html"), (status, ctype)
        assert "<form" in body and 'name="password"' in body
        status, ctype, _ = _get(base + "/static/console.css")
        assert status == 200 and ctype.startswith("text/css")
        assert (tmp_path / "var" / "edigw.sqlite3").exists()  # migrations ran from the wheel
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
