"""A real Dovecot IMAP server on a loopback port, for the e-mail channel's tests.

Everything lives in one temporary folder: the config, a passwd-file with one user, the
maildirs, Dovecot's base and state folders and its log. No system user is created: mail is
stored as the current user (``mail_uid``/``mail_gid``), and ``default_internal_user`` /
``default_login_user`` are the current user too when it is not root (Dovecot refuses to run
its login processes as root, so as root they are Debian's ``dovecot`` / ``dovenull``).
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.services import require_program

USER = "orders@edigw.test"
PASSWORD = "imap-secret"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Dovecot:
    """A running Dovecot: where it listens, its user, and how to stop and start it."""

    root: Path
    port: int
    config: Path
    program: str
    user: str = USER
    password: str = PASSWORD
    host: str = "127.0.0.1"

    def start(self) -> None:
        # Dovecot daemonises; its children must not hold our pipes open.
        with open(self.root / "start.log", "ab") as out:
            subprocess.run([self.program, "-c", str(self.config)], check=True,
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log_tail()}")

    def stop(self) -> None:
        """Stop the master and every process of this instance, and wait until none is left:
        Dovecot can leave a logged-in ``imap`` process serving its client after the master
        is gone, which would hide "the server went away" from the tests. Dovecot's processes
        stay in the master's process group (it calls ``setsid``), also the ones started
        while stopping and the ones re-parented once the master has exited: the group is
        killed as a whole, which touches no other Dovecot on the machine."""
        group = self._master()
        children = self._processes()
        doveadm = shutil.which("doveadm") or str(Path(self.program).with_name("doveadm"))
        subprocess.run([doveadm, "-c", str(self.config), "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    time.sleep(0.05)
            except OSError:
                break
        if group is not None:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass  # the group is empty: everything is gone already
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # already gone
        deadline = time.monotonic() + 10
        while group is not None and _alive_in_group(group) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _master(self) -> int | None:
        try:
            return int((self.root / "run" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _processes(self) -> list[int]:
        """The master's descendants (from its pid file)."""
        master = self._master()
        if master is None:
            return []
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found = {master}
        grew = True
        while grew:
            more = {pid for pid, ppid in parents.items() if ppid in found} - found
            grew = bool(more)
            found |= more
        return sorted(found - {master})

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "dovecot.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) \
            if log.exists() else ""

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A plain ``imaplib`` session as the test user, to put mail in and look at it."""
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        imap.login(self.user, self.password)
        try:
            yield imap
        finally:
            try:
                imap.logout()
            except (imaplib.IMAP4.error, OSError):
                pass

    def create(self, folder: str) -> None:
        with self.client() as imap:
            imap.create(_quote(folder))

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        with self.client() as imap:
            typ, data = imap.append(_quote(folder), None, None, raw)
            assert typ == "OK", data

    def uids(self, folder: str = "INBOX") -> list[int]:
        """The UIDs of the messages in ``folder`` not flagged deleted ([] when it is missing)."""
        with self.client() as imap:
            typ, _ = imap.select(_quote(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("SEARCH", "UNDELETED")
            return [int(x) for x in data[0].split()] if data and data[0] else []

    def flags(self, folder: str = "INBOX") -> list[str]:
        """The flags of each message in ``folder``, as IMAP prints them."""
        with self.client() as imap:
            typ, _ = imap.select(_quote(folder), readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.fetch("1:*", "(FLAGS)")
            return [d.decode() for d in data if isinstance(d, bytes)]


def _alive_in_group(group: int) -> bool:
    """Whether a process of process group ``group`` still runs (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def _quote(folder: str) -> str:
    return '"' + folder + '"'


def _mail_user() -> pwd.struct_passwd:
    """Who owns the mail: the current user, or ``nobody`` as root (Dovecot refuses uid 0)."""
    return pwd.getpwnam("nobody") if os.getuid() == 0 else pwd.getpwuid(os.getuid())


def _config(root: Path, port: int) -> str:
    me = _mail_user()
    internal, login = (("dovecot", "dovenull") if os.getuid() == 0 else (me.pw_name, me.pw_name))
    return f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_uid = {me.pw_uid}
mail_gid = {me.pw_gid}
first_valid_uid = 0
default_internal_user = {internal}
default_login_user = {login}
mail_plugins =
protocol imap {{
  mail_max_userip_connections = 50
  imap_idle_notify_interval = 1 secs
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={me.pw_uid} gid={me.pw_gid} home={root}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
"""


def start_dovecot() -> Dovecot:
    """Start Dovecot in a fresh temporary folder (skips, or fails in CI, when it is not
    installed); ``stop`` it and ``cleanup`` the folder at the end.

    The folder is made under the system temp dir with mode 0755, not under pytest's
    ``tmp_path`` (mode 0700), because as root the mail belongs to ``nobody``, which must
    reach it.
    """
    program = require_program("dovecot", "dovecot-imapd")
    root = Path(tempfile.mkdtemp(prefix="edigw-dovecot-"))
    os.chmod(root, 0o755)
    me = _mail_user()
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(exist_ok=True)
        os.chmod(root / sub, 0o755)
    for sub in ("mail", "home"):
        os.chown(root / sub, me.pw_uid, me.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = free_port()
    config = root / "dovecot.conf"
    config.write_text(_config(root, port))
    server = Dovecot(root=root, port=port, config=config, program=program)
    server.start()
    return server
