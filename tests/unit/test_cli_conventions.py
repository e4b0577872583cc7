"""The conventions of docs/cli.md: --version, --json on every reporting command, command
output on stdout and log lines on stderr in ``[log] format``, progress bars only on a
terminal, times shown in the gateway's one zone and given in JSON with their offset."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gateway import __version__
from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"
GOUDEN = ('id = "gouden"\nname = "Gouden"\n[identifiers]\nunb = [{ id = "5401234000012", qualifier = "14" }]\n'
          '[[documents]]\ntype = "order"\nmapping = "eancom-orders-d96a"\n')

#: Every command that reports or lists, by its path under ``edigw``: each has --json.
REPORTING = [
    ("status",), ("check-config",), ("db", "upgrade"), ("mappings", "test"),
    ("schemas", "write"), ("ingest",), ("reprocess",), ("declare",), ("channels",),
    ("instances",), ("price-lists",), ("security",), ("purge",), ("show",), ("send",),
    ("alerts",), ("alerts", "check"), ("conflicts",), ("conflicts", "list"), ("conflicts", "show"), ("conflicts", "release"),
    ("conflicts", "reject"), ("users", "add"), ("users", "list"), ("users", "set-role"),
    ("users", "disable"), ("users", "enable"), ("users", "password"), ("tokens", "create"),
    ("tokens", "list"), ("tokens", "revoke"),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings with one partner (gouden), a SQLite store, no broker, JSON logs."""
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "gouden.toml").write_text(GOUDEN)
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n'  # nothing listens on port 1
        '[log]\nformat = "json"\n')
    monkeypatch.chdir(tmp_path)
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def edigw(*args: str, stderr: int | None = subprocess.PIPE, fmt: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    """``edigw -c gateway.toml ARGS`` in a real process (its own stdout and stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if fmt is not None:
        Path("gateway.toml").write_text(
            Path("gateway.toml").read_text().replace('format = "json"', f'format = "{fmt}"'))
    return subprocess.run([sys.executable, "-m", "gateway.cli", "-c", "gateway.toml", *args],
                          stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                          timeout=120)


def bad_order() -> bytes:
    """The sample order with a quantity that is not a number: FAILED, with a log line."""
    data = SAMPLE.read_bytes()
    assert b"QTY+21:40:BG" in data
    return data.replace(b"QTY+21:40:BG", b"QTY+21:xx:BG").replace(b"ICR0042", b"ICR0043")


def test_version_names_the_program_and_its_version() -> None:
    """``edigw --version`` prints ``edigw <version>`` and exits 0."""
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0
    assert r.output.strip() == f"edigw {__version__}"


def test_every_reporting_command_has_json() -> None:
    """Each listing or reporting command takes --json."""
    missing = []
    for path in REPORTING:
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group), path
            # asked of the group (the commands are loaded when first asked for)
            found = command.get_command(click.Context(command), name)
            assert found is not None, f"no command {' '.join(path)}"
            command = found
        if not any("--json" in p.opts for p in command.params):
            missing.append(" ".join(path))
    assert missing == []


def test_ingest_json_on_stdout_and_json_logs_on_stderr(workdir: Path) -> None:
    """With --json, stdout is one JSON document only; the failure's log line is on stderr,
    as JSON since [log] format = "json"; no escape codes anywhere (not a terminal)."""
    Path("bad.edi").write_bytes(bad_order())
    r = edigw("ingest", "--json", str(SAMPLE), "bad.edi")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert [t["file"] for t in out["transmissions"]] == ["eancom-orders-d96a.sample.edi",
                                                         "bad.edi"]
    assert [t["failed"] for t in out["transmissions"]] == [False, True]
    assert out["published"]["confirmed"] is False and out["published"]["waiting"] == 1
    logs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "transmission_failed" and e["level"] == "warning" for e in logs)
    assert "\x1b[" not in r.stdout + r.stderr


def test_ingest_console_logs_go_to_stderr_in_console_format(workdir: Path) -> None:
    """With [log] format = "console", the log line is a console line on stderr, and stdout
    holds only the command's own lines."""
    Path("bad.edi").write_bytes(bad_order())
    r = edigw("ingest", "bad.edi", fmt="console")
    assert r.returncode == 1
    assert "transmission_failed" not in r.stdout
    assert "bad.edi: FAILED at validate" in r.stdout
    line = next(x for x in r.stderr.splitlines() if "transmission_failed" in x)
    assert "[warning" in line and not line.startswith("{")


def test_progress_is_drawn_on_a_terminal_only(workdir: Path) -> None:
    """On a terminal's stderr the ingest draws its progress (files, documents mapped);
    with --quiet it does not, and stdout stays plain."""
    def on_terminal(*args: str) -> tuple[str, str]:
        leader, follower = pty.openpty()
        try:
            r = edigw(*args, stderr=follower)
            os.close(follower)
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(leader)
        return r.stdout, b"".join(chunks).decode(errors="replace")

    stdout, terminal = on_terminal("ingest", "--no-publish", str(SAMPLE))
    assert "document(s) mapped" in terminal and "1 file(s)" in terminal
    assert "\x1b[" not in stdout and "document(s) for partner gouden" in stdout
    _, quiet = on_terminal("ingest", "--no-publish", "--quiet", str(SAMPLE))
    assert "document(s) mapped" not in quiet


def test_reporting_commands_answer_json_with_offsets(workdir: Path) -> None:
    """status, check-config, db upgrade, mappings test, show and users give JSON; times in
    it carry their offset."""
    def run(*args: str) -> str:
        r = CliRunner().invoke(main, ["--config", "gateway.toml", *args])
        assert r.exit_code == 0, r.output
        return r.stdout

    ingested = json.loads(run("ingest", "--json", "--no-publish", str(SAMPLE)))
    tid = ingested["transmissions"][0]["transmission_id"]
    assert json.loads(run("status", "--json"))["transmissions"] == {"PROCESSED": 1}
    config = json.loads(run("check-config", "--json"))
    assert config["ok"] is True and config["partners"] == ["gouden"]
    assert json.loads(run("db", "upgrade", "--json"))["revision"]
    lines = [json.loads(x) for x in run("mappings", "test", "--json").splitlines()]
    assert lines[-1]["failed"] == 0 and lines[-1]["passed"] == len(lines) - 1
    shown = json.loads(run("show", tid, "--json"))
    assert dt.datetime.fromisoformat(shown["received_at"]).utcoffset() is not None
    assert all(dt.datetime.fromisoformat(e["at"]).utcoffset() is not None
               for e in shown["events"])
    os.environ["EDIGW_TEST_PW"] = "a long enough password 1"
    try:
        user = json.loads(run("users", "add", "marie", "--role", "viewer", "--password-env",
                              "EDIGW_TEST_PW", "--json"))
    finally:
        del os.environ["EDIGW_TEST_PW"]
    assert user["username"] == "marie" and user["disabled"] is False
    assert json.loads(run("users", "disable", "marie", "--json"))["disabled"] is True


def test_show_prints_times_in_the_gateway_zone(workdir: Path) -> None:
    """show names the zone of its timeline and prints the receipt with the zone's
    abbreviation ([tracker] timezone, Europe/Paris by default)."""
    r = CliRunner().invoke(main, ["--config", "gateway.toml", "ingest", "--json",
                                  "--no-publish", str(SAMPLE)])
    tid = json.loads(r.stdout)["transmissions"][0]["transmission_id"]
    r = CliRunner().invoke(main, ["--config", "gateway.toml", "show", tid])
    assert "timeline (Europe/Paris)" in r.output
    received = next(x for x in r.output.splitlines() if x.strip().startswith("received"))
    assert received.rstrip().endswith(("CET", "CEST"))


def test_the_pipeline_tells_each_document_as_it_is_mapped(tmp_path: Path) -> None:
    """Pipeline.on_document (the ingest's progress on one large file) is called once per
    document mapped, before the transmission is done."""
    from tests.unit.test_explain import Gateway, order

    gw = Gateway(tmp_path)
    told: list[int] = []
    gw.pipeline.on_document = lambda: told.append(len(told))
    tid = gw.send(order("300", "PO-300"))
    documents = gw.store.get_transmission(tid).document_count
    assert documents == 1 and len(told) == documents


def test_show_says_waiting_where_log_says_waiting(workdir: Path) -> None:
    """A published document the ERP has not answered reads "waiting" in show's erp column,
    the word log uses (not "-")."""
    from gateway.store.db import Store

    def run(*args: str) -> str:
        return CliRunner().invoke(main, ["--config", "gateway.toml", *args]).stdout

    tid = json.loads(run("ingest", "--json", "--no-publish", str(SAMPLE))
                     )["transmissions"][0]["transmission_id"]
    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    store.mark_published([i.outbox_id for i in store.pending_outbox(10)])
    store.close()
    assert run("log").splitlines()[1].split()[-1] == "waiting"
    documents = run("show", tid).split("documents (1)")[1].splitlines()
    header, row = documents[1].split(), documents[2].split()
    assert row[header.index("erp")] == "waiting"
