"""A private Postfix instance on a loopback port that delivers into a Dovecot's maildirs, for
the outbound e-mail tests (Dovecot's own submission service only relays: it cannot deliver).

    with Postfix.start(dovecot) as mta:     # SMTP on mta.port; mail for the Dovecot user
        ...                                 # lands in its INBOX (virtual(8), Maildir)

Everything is under a temporary folder: ``main.cf`` and ``master.cf`` (the package's
``master.cf`` with the SMTP listener moved to ``127.0.0.1:<port>``), the queue, the data
folder and the log (``maillog_file``). Mail for ``@edigw.test`` goes to
``<dovecot root>/mail/<address>/`` as the Dovecot mail user, which is where Dovecot's
``mail_location`` reads. Needs root (Postfix's master runs as root) and the ``postfix``
package (``apt-get install postfix``); skipped, or failed under CI=true, otherwise.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.integration.dovecot import Dovecot, _mail_user, free_port
from tests.services import require_program

DOMAIN = "edigw.test"


@dataclass
class Postfix:
    root: Path
    port: int
    program: str

    @classmethod
    def start(cls, dovecot: Dovecot) -> Postfix:
        program = require_program("postfix", "postfix")
        if os.geteuid() != 0:
            reason = "a private Postfix instance needs root (its master runs as root)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        root = Path(tempfile.mkdtemp(prefix="edigw-postfix-"))
        os.chmod(root, 0o755)
        mta = cls(root=root, port=free_port(), program=program)
        mta._configure(dovecot)
        mta._run("start")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", mta.port), timeout=0.5):
                    return mta
            except OSError:
                time.sleep(0.1)
        log = mta.log_tail()
        mta.stop()
        raise RuntimeError(f"postfix did not listen on {mta.port}: {log}")

    def _configure(self, dovecot: Dovecot) -> None:
        me = _mail_user()
        (self.root / "queue").mkdir()
        (self.root / "data").mkdir()
        owner = pwd.getpwnam("postfix")
        os.chown(self.root / "data", owner.pw_uid, owner.pw_gid)  # master.lock, caches
        (self.root / "vmailbox").write_text(f"{dovecot.user} {dovecot.user}/\n")
        (self.root / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
maillog_file = {self.root}/postfix.log
maillog_file_prefixes = {self.root}
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {dovecot.root}/mail
virtual_mailbox_maps = texthash:{self.root}/vmailbox
virtual_uid_maps = static:{me.pw_uid}
virtual_gid_maps = static:{me.pw_gid}
virtual_minimum_uid = 1
message_size_limit = 52428800
virtual_mailbox_limit = 0
smtputf8_enable = no
""")
        master = Path("/etc/postfix/master.cf").read_text()
        master, n = re.subn(r"(?m)^smtp\s+inet\s", f"127.0.0.1:{self.port} inet ", master,
                            count=1)
        if n != 1:
            raise RuntimeError("no smtp inet service in /etc/postfix/master.cf")
        if not re.search(r"(?m)^postlog\s", master):
            master += "postlog   unix-dgram n  -       n       -       1       postlogd\n"
        (self.root / "master.cf").write_text(master)

    def _run(self, *args: str) -> None:
        proc = subprocess.run([self.program, "-c", str(self.root), *args],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)}: {proc.stderr.strip()[-1500:]}")

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "postfix.log"
        return "\n".join(log.read_text().splitlines()[-lines:]) if log.exists() else ""

    def stop(self) -> None:
        try:
            self._run("stop")
        except RuntimeError:
            pass

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Postfix:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.cleanup()
