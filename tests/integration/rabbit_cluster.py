"""A RabbitMQ cluster of its own for tests: three (or ``nodes``) extra ``rabbitmq-server``
nodes on loopback, clustered with ``rabbitmqctl join_cluster``.

    with RabbitCluster(tmp_path, nodes=3) as cluster:
        cluster.urls            # ["amqp://guest:guest@127.0.0.1:<port>/%2F", ...]
        cluster.stop(1)         # node 1 (0-based) goes down (graceful; kill=True: SIGKILL)
        cluster.start(1)        # and comes back, rejoining the cluster

The machine's own RabbitMQ (``rabbit@localhost`` on 5672/25672) is never touched: every node
here has its own name (``edigw<i>-<token>@localhost``), AMQP and distribution ports (free
ones from the OS unless ``base_port`` is given), data, log, config, enabled-plugins and
rabbitmq-env files under ``root``, and an Erlang cookie shared only by these nodes and the
``rabbitmqctl`` calls made here (a ``HOME`` under ``root`` holding ``.erlang.cookie``,
mode 400). No plugin is enabled (no management), so a node boots in a few seconds.

Start-up on this 2-core machine: about 15 s for three nodes (they boot in parallel, then
nodes 2.. join node 1 in parallel: ``stop_app``, ``join_cluster``, ``start_app``); a
stopped node comes back in about 5 s.
See :attr:`RabbitCluster.startup_seconds`.

The nodes cannot outlive the test process: they are stopped on ``__exit__`` / :meth:`close`,
by an ``atexit`` hook, and, should the test process be killed, by the kernel
(``PR_SET_PDEATHSIG``: SIGKILL when the process that started them dies). Use the cluster from
the thread that started it, or at least keep that thread alive (a dead parent *thread* also
fires the death signal).

When the cluster cannot start (no ``rabbitmq-server``, a node does not boot), the
:func:`rabbit_cluster` fixture skips, or fails when ``CI=true``; :class:`RabbitCluster`
itself raises :class:`ClusterError` with the node's log tail.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import pytest

SBIN = Path("/usr/lib/rabbitmq/bin")  # Debian: the real scripts, not the su wrapper
BOOT_TIMEOUT = 90.0  # seconds a node may take to accept AMQP connections
_LIVE: weakref.WeakSet[RabbitCluster] = weakref.WeakSet()


class ClusterError(RuntimeError):
    """The cluster (or one of its nodes) could not be started or changed."""


def _program(name: str) -> str:
    candidate = SBIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/local/sbin") / name)
         if p.exists()), None)
    if found is None:
        raise ClusterError(f"{name} is not installed (Debian package rabbitmq-server)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """SIGKILL this process when the process (thread) that started it dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Node:
    """One ``rabbitmq-server`` process of the cluster."""

    def __init__(self, cluster: RabbitCluster, index: int, name: str, port: int,
                 dist_port: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = name  # edigw1-ab12cd@localhost
        self.port = port
        self.dist_port = dist_port
        self.dir = cluster.root / f"node{index + 1}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def log_file(self) -> Path:
        return self.dir / "log" / f"{self.name}.log"

    def env(self) -> dict[str, str]:
        d = self.dir
        env = dict(os.environ)
        # Nothing of the system node's configuration: its env file names rabbit@localhost.
        for key in list(env):
            if key.startswith(("RABBITMQ_", "ERL_")):
                del env[key]
        env.update(
            HOME=str(self.cluster.home),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(d / "rabbitmq.pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                "-kernel inet_dist_use_interface {127,0,0,1} "
                f"-setcookie {self.cluster.cookie}"),
            RABBITMQ_CTL_ERL_ARGS=f"-setcookie {self.cluster.cookie}",
            # rabbitmq-server then execs the Erlang VM instead of running it as a child of a
            # shell that traps signals: the process started here IS the node (a SIGKILL
            # kills it, and the parent-death signal reaches it).
            RUNNING_UNDER_SYSTEMD="true",
        )
        return env

    def prepare(self) -> None:
        d = self.dir
        for sub in ("mnesia", "log"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "rabbitmq-env.conf").write_text("# edigw test node: settings come from the "
                                             "environment\n")
        (d / "rabbitmq.conf").write_text(
            "loopback_users.guest = true\n"
            "log.console = false\n"
            "log.file.level = info\n"
            "disk_free_limit.absolute = 10MB\n"
            "vm_memory_high_watermark.relative = 0.2\n"
            "cluster_partition_handling = pause_minority\n")
        (d / "advanced.config").write_text("[].\n")
        (d / "enabled_plugins").write_text("[].\n")

    def launch(self) -> None:
        """Start the server process (returns at once; see :meth:`wait_booted`)."""
        if self.process is not None and self.process.poll() is None:
            return
        out = open(self.dir / "stdout.log", "ab")
        try:
            self.process = subprocess.Popen(
                [_program("rabbitmq-server")], env=self.env(), cwd=self.dir, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent)
        finally:
            out.close()

    def wait_booted(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until the node answers ``await_startup`` (its AMQP listener is up)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise ClusterError(f"node {self.name} exited with status "
                                   f"{self.process.returncode} while booting\n{self.log_tail()}")
            if self._amqp_open():
                try:
                    self.ctl("await_startup", timeout=max(5.0, deadline - time.monotonic()))
                    return
                except ClusterError:
                    if time.monotonic() > deadline:
                        raise
            if time.monotonic() > deadline:
                raise ClusterError(f"node {self.name} did not boot in {timeout:g} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.2)

    def _amqp_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <node> args…``; its output, or ClusterError."""
        try:
            done = subprocess.run([_program("rabbitmqctl"), "-n", self.name, *args],
                                  env=self.env(), cwd=self.dir, capture_output=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"rabbitmqctl -n {self.name} {' '.join(args)}: no answer in "
                               f"{timeout:g} s") from exc
        if done.returncode != 0:
            raise ClusterError(f"rabbitmqctl -n {self.name} {' '.join(args)} failed "
                               f"({done.returncode}): "
                               f"{(done.stderr or done.stdout).decode(errors='replace')[-2000:]}")
        return done.stdout.decode(errors="replace")

    def stop(self, *, kill: bool = False, timeout: float = 60.0) -> None:
        """SIGTERM (Erlang stops the node gracefully) or SIGKILL; waits for the exit."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for path in (self.dir / "stdout.log", self.log_file):
            try:
                texts.append(f"--- {path}\n" + "\n".join(
                    path.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                continue
        return "\n".join(texts)


class RabbitCluster:
    """``nodes`` RabbitMQ nodes on loopback, clustered; a context manager.

    ``root``: a folder for the nodes' files (a ``tmp_path`` or ``tmp_path_factory`` folder).
    ``base_port``: node ``i`` listens on ``base_port + i`` (distribution ``+ 20000``);
    free ports from the OS when None (the default: two sessions on one machine can run side
    by side). ``prefix``: node names are ``<prefix><i>-<token>@localhost``, ``i`` from 1.
    """

    def __init__(self, root: str | os.PathLike[str], nodes: int = 3, *,
                 base_port: int | None = None, prefix: str = "edigw") -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.root = Path(root) / f"rabbit-cluster-{uuid.uuid4().hex[:6]}"
        self.home = self.root / "home"
        self.cookie = uuid.uuid4().hex.upper()
        token = self.root.name.rsplit("-", 1)[1]
        self.nodes: list[Node] = []
        for i in range(nodes):
            port = base_port + i if base_port is not None else _free_port()
            dist = port + 20000 if base_port is not None else _free_port()
            self.nodes.append(Node(self, i, f"{prefix}{i + 1}-{token}@localhost", port, dist))
        self.startup_seconds: float | None = None
        self._started = False

    # -- what tests use -------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """One AMQP URL per node (guest/guest, vhost /), in node order."""
        return [n.url for n in self.nodes]

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def url(self, index: int) -> str:
        return self.nodes[index].url

    def stop(self, index: int, *, kill: bool = False) -> None:
        """Node ``index`` (0-based) goes down: gracefully, or ``kill=True``: SIGKILL."""
        self.nodes[index].stop(kill=kill)

    def start(self, index: int, timeout: float = BOOT_TIMEOUT) -> None:
        """Node ``index`` comes back (it rejoins the cluster from its own data)."""
        node = self.nodes[index]
        node.launch()
        node.wait_booted(timeout)

    stop_node = stop
    start_node = start

    def running(self) -> list[int]:
        return [n.index for n in self.nodes if n.running]

    def ctl(self, *args: str, node: int | None = None, timeout: float = 60.0) -> str:
        """``rabbitmqctl`` against a running node (the first running one by default)."""
        index = node if node is not None else next(iter(self.running()), 0)
        return self.nodes[index].ctl(*args, timeout=timeout)

    # -- life cycle -----------------------------------------------------------------------

    def __enter__(self) -> RabbitCluster:
        self.start_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start_all(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Boot every node (in parallel) and join nodes 2.. to node 1."""
        if self._started:
            return
        began = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        _LIVE.add(self)
        self._started = True
        try:
            for node in self.nodes:
                node.prepare()
                node.launch()
            first = self.nodes[0]

            def join(node: Node) -> None:
                node.wait_booted(timeout)
                if node is not first:
                    first_booted.result()
                    node.ctl("stop_app")
                    node.ctl("join_cluster", first.name)
                    node.ctl("start_app")
                    node.wait_booted(timeout)

            # Each rabbitmqctl call costs about a second of CLI start-up: in parallel.
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                first_booted = pool.submit(first.wait_booted, timeout)
                for future in [pool.submit(join, n) for n in self.nodes[1:]]:
                    future.result()
                first_booted.result()
            self._check_members()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began

    def _check_members(self) -> None:
        status = self.nodes[0].ctl("cluster_status", "--formatter", "json")
        missing = [n.name for n in self.nodes if f'"{n.name}"' not in status]
        if missing:
            raise ClusterError(f"nodes not in the cluster: {', '.join(missing)}\n{status}")

    def close(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after a while)."""
        for node in self.nodes:
            if node.running and node.process is not None:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30.0
        for node in self.nodes:
            process = node.process
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        _LIVE.discard(self)
        self._started = False


@atexit.register
def _close_all() -> None:  # pragma: no cover - the fixtures close theirs
    for cluster in list(_LIVE):
        cluster.close()


def start_or_skip(root: Path, nodes: int = 3) -> RabbitCluster:
    """A started cluster; skip the test when it cannot start, or fail when ``CI=true``."""
    cluster = RabbitCluster(root, nodes)
    try:
        cluster.start_all()
    except ClusterError as exc:
        reason = f"a {nodes}-node RabbitMQ cluster could not be started: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}\nin CI the cluster tests must run", pytrace=False)
        pytest.skip(reason)
    return cluster


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    """A three-node cluster for the session (import this fixture into a test module or a
    conftest to use it); stopped at the session's end. Tests that stop a node should start it
    again before they end."""
    cluster = start_or_skip(tmp_path_factory.mktemp("rabbit"))
    try:
        yield cluster
    finally:
        cluster.close()
