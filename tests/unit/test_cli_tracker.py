"""edigw explain and edigw purge through click, on a store filled by a real pipeline."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from gateway.cli.common import CliContext as _Ctx
from gateway.cli.tracker import explain, purge
from gateway.core import clock
from tests.unit.test_explain import GOUDEN, ROOT, START, Gateway, order


@click.group()
@click.option("--config")
@click.pass_context
def edigw(ctx: click.Context, config: str) -> None:
    """The commands as gateway.cli registers them."""
    ctx.obj = _Ctx(config)


edigw.add_command(explain)
edigw.add_command(purge)


@pytest.fixture
def when():
    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def gw(tmp_path, when):
    """Settings and a partner profile on disk that match the test pipeline's store."""
    (tmp_path / "partners").mkdir()
    (tmp_path / "partners" / "gouden.toml").write_text(
        'id = "gouden"\nname = "De Gouden Aar"\n'
        f'[identifiers]\nunb = [{{ id = "{GOUDEN.decode()}", qualifier = "14" }}]\n'
        "[tracker]\nretention_days = 30\n")
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{tmp_path / "partners"}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite3"}"\n'
        f'[archive]\npath = "{tmp_path / "archive"}"\nfsync = false\n'
        '[tracker]\ntimezone = "Europe/Paris"\n')
    g = Gateway(tmp_path)
    g.config = str(tmp_path / "gateway.toml")
    return g


def run(gw, *args):
    return CliRunner().invoke(edigw, ["--config", gw.config, *args], catch_exceptions=False)


def test_explain_prints_verdict_summary_and_evidence(gw, when):
    """A failed order: the verdict, the sentence and dated evidence with ids."""
    tid = gw.send(order("1042", "PO-2", bad=True), filename="po2.edi")
    when.advance(minutes=5)
    r = run(gw, "explain", "--partner", "gouden", "--order", "PO-2")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "verdict: failed"
    assert lines[1].startswith("Order PO-2 from gouden was received 2024-03-05 08:00 CET in "
                               "file po2.edi")
    assert any(line.startswith("  2024-03-05 08:00  received") and f"[{tid}]" in line
               for line in lines)
    assert any("position" in line and "line 21" in line for line in lines)


def test_explain_json_is_the_api_answer(gw, when):
    """--json prints as_dict: verdict, summary, evidence, documents, transmissions, query."""
    gw.send(order("1045", "PO-3"))
    gw.publish()
    when.advance(minutes=40)
    r = run(gw, "explain", "--order", "PO-3", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["verdict"] == "waiting-erp"
    assert out["query"] == {"number": "PO-3", "doc_type": "order"}
    assert out["documents"][0]["business_number"] == "PO-3"
    assert {f["kind"] for f in out["evidence"]} >= {"received", "published", "sla"}


def test_explain_an_order_that_never_came_names_the_gap(gw, when):
    """Interchanges 1041, 1042 and 1045 received; an unknown order: never received, with
    the last contact and 1043-1044 missing."""
    for ref, number in (("1041", "PO-1"), ("1042", "PO-2"), ("1045", "PO-3")):
        gw.send(order(ref, number), filename=f"{ref}.edi")
        when.advance(hours=1)
    r = run(gw, "explain", "--partner", "gouden", "--order", "PO-404",
            "--since", "2024-03-05", "--until", "2024-03-05")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("verdict: never-received\nNo order PO-404 from gouden has been "
                               "received between 2024-03-05 00:00 CET and 2024-03-06 00:00 CET")
    assert "last-contact" in r.output and "interchange references 1043-1044 missing" in r.output


def test_explain_by_file_and_dates(gw, when):
    """--file finds a transmission whose content could not be read; --until excludes it
    when it came later."""
    gw.send(b"not an EDI file", filename="broken.txt")
    r = run(gw, "explain", "--file", "broken")
    assert r.exit_code == 0 and r.output.startswith("verdict: failed\nFile broken was received")
    r = run(gw, "explain", "--file", "broken", "--until", "2024-03-04")
    assert r.output.startswith("verdict: never-received")


def test_explain_needs_something_to_look_for(gw, when):
    """Without a number, reference, file or partner: a usage error, exit 2."""
    r = run(gw, "explain")
    assert r.exit_code == 2 and "say what to look for" in r.output
    r = run(gw, "explain", "--order", "1", "--invoice", "2")
    assert r.exit_code == 2 and "give one of --order, --invoice" in r.output


def test_purge_dry_run_then_purge(gw, when):
    """The dry run lists the old payload and keeps it; purge deletes it; again: nothing."""
    tid = gw.send(order("1041", "PO-1"))
    sha = gw.store.get_transmission(tid).sha256
    when.advance(days=31)
    r = run(gw, "purge", "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"would purge {tid}  gouden  received 2024-03-05 08:00 CET" in r.output  # the gateway's zone
    assert "1 transmission(s) to purge, 1 file(s) to delete" in r.output
    assert sha in gw.archive
    r = run(gw, "purge")
    assert f"purged {tid}" in r.output and "1 file(s) deleted" in r.output
    assert sha not in gw.archive
    again = json.loads(run(gw, "purge", "--json").output)
    assert again["transmissions"] == 0 and again["retention"] == {"gouden": 30}


def test_dates_are_days_of_the_tracker_time_zone(gw, when):
    """A file received 23:30 UTC on the 5th is on the 6th in Paris: --until 2024-03-05
    leaves it out, --since 2024-03-06 finds it."""
    when.advance(hours=16, minutes=30)
    gw.send(order("1041", "PO-1"), filename="late.edi")
    assert run(gw, "explain", "--file", "late", "--until", "2024-03-05").output.startswith(
        "verdict: never-received")
    found = run(gw, "explain", "--file", "late", "--since", "2024-03-06")
    assert found.output.startswith("verdict: in-progress")
    assert "received 2024-03-06 00:30 CET" in found.output
