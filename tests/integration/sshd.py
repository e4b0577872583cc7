"""A real OpenSSH ``sshd`` with SFTP on a loopback port, for the SFTP channel tests.

    with SshServer.start(tmp_path) as server:
        settings = server.settings(inbound=[...])    # an SftpSettings pinned to its host key
        server.put("in/a.edi", data)                 # a file on the "remote" side
        server.stop(); server.restart()              # the server going away and coming back

Everything lives in a temp folder: the config, a generated ed25519 host key, the client key
the test user logs in with (``AuthorizedKeysFile`` in the folder, ``StrictModes no``), the
pid file and the log. The SFTP user is the current user (no chroot), so the "remote" folders
are plain folders under ``root/remote`` the test can look at directly. ``UsePAM no``: no
system configuration is read or changed. ``/run/sshd`` (the privilege separation folder) is
created when running as root, as sshd insists on it then.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from gateway.config import SftpInbound, SftpSettings
from tests.services import require_program


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, *, passphrase: str = "", kind: str = "ed25519") -> str:
    """Write an OpenSSH key pair at ``path`` / ``path.pub``; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "edigw-test",
                    "-f", str(path)], check=True, capture_output=True)
    return Path(f"{path}.pub").read_text().strip()


@dataclasses.dataclass
class SshServer:
    """One sshd process on ``127.0.0.1:port``, configured and keyed from ``root``."""

    root: Path
    port: int
    program: str
    user: str
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, root: Path, *, port: int | None = None) -> SshServer:
        """Generate keys and config under ``root`` and start sshd (skip when not installed)."""
        program = require_program("sshd", "openssh-server")
        root.mkdir(parents=True, exist_ok=True)
        server = cls(root=root, port=port or free_port(), program=program,
                     user=getpass.getuser())
        (root / "keys").mkdir(exist_ok=True)
        server.remote.mkdir(exist_ok=True)
        keygen(root / "keys" / "host_ed25519")
        client_pub = keygen(root / "keys" / "client_ed25519")
        (root / "keys" / "authorized_keys").write_text(client_pub + "\n")
        server._write_config()
        server.restart()
        return server

    # -- paths and settings ------------------------------------------------------------------

    @property
    def remote(self) -> Path:
        """The folder the remote paths of the tests live in."""
        return self.root / "remote"

    @property
    def config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_key_line(self) -> str:
        """The server's public host key as a known_hosts entry (``ssh-ed25519 AAAA…``)."""
        return (self.root / "keys" / "host_ed25519.pub").read_text().strip()

    @property
    def client_key(self) -> Path:
        return self.root / "keys" / "client_ed25519"

    def path(self, relative: str) -> str:
        """The remote (absolute) path of ``relative`` under the remote folder."""
        return str(self.remote / relative)

    def settings(self, *, inbound: list[dict[str, Any]] | None = None,
                 **overrides: Any) -> SftpSettings:
        """``SftpSettings`` for this server: key login, host key pinned, remote folders made
        absolute under ``remote`` (``in`` by default) and created."""
        folders = inbound if inbound is not None else [{"folder": "in"}]
        made = []
        for spec in folders:
            spec = dict(spec)
            spec["folder"] = self.path(spec["folder"])
            Path(spec["folder"]).mkdir(parents=True, exist_ok=True)
            if spec.get("move_to"):
                spec["move_to"] = self.path(spec["move_to"])
                Path(spec["move_to"]).mkdir(parents=True, exist_ok=True)
            made.append(SftpInbound(**spec))
        values: dict[str, Any] = dict(host="127.0.0.1", port=self.port, user=self.user,
                                      key_file=self.client_key, host_key=self.host_key_line,
                                      inbound=made, poll_interval=0.1, timeout=5.0)
        if overrides.get("outbound_folder"):
            overrides["outbound_folder"] = self.path(overrides["outbound_folder"])
            Path(overrides["outbound_folder"]).mkdir(parents=True, exist_ok=True)
        values.update(overrides)
        return SftpSettings(**values)

    # -- remote files ---------------------------------------------------------------------------

    def put(self, relative: str, data: bytes) -> Path:
        """A complete file on the server, written under a dot-name and renamed (atomic)."""
        target = self.remote / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp")
        temp.write_bytes(data)
        os.rename(temp, target)
        return target

    def files(self, relative: str) -> list[str]:
        folder = self.remote / relative
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    # -- the process ------------------------------------------------------------------------------

    def _write_config(self) -> None:
        keys = self.root / "keys"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {keys / "host_ed25519"}
PidFile {self.root / "sshd.pid"}
AuthorizedKeysFile {keys / "authorized_keys"}
StrictModes no
UsePAM no
PermitRootLogin yes
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
LogLevel VERBOSE
MaxStartups 50
Subsystem sftp internal-sftp
""")

    def restart(self, timeout: float = 10.0) -> None:
        """Start sshd (again, on the same port) and wait until it accepts connections."""
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run([self.program, "-t", "-f", str(self.config)],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"sshd refuses its config: {check.stderr.strip()}")
        self.process = subprocess.Popen(
            [self.program, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.process.returncode}): "
                                   f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        """Stop the listener and every session it started: the server is gone. The listener
        is frozen first (SIGSTOP), so that no session is forked while its sessions are
        killed; each session is its own process session (``setsid``), so they are found
        by parenthood, not by process group."""
        if self.process is None:
            return
        pid = self.process.pid
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
        sessions = _descendants(pid)
        for child in sessions:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.kill()
        self.process.wait(5)
        deadline = time.monotonic() + 10
        while any(_running(p) for p in sessions) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.process = None

    def __enter__(self) -> SshServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _descendants(pid: int) -> list[int]:
    """Children of ``pid``, their children, and so on."""
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = _children(todo.pop())
        found += kids
        todo += kids
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (sshd's per-connection sessions)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found
