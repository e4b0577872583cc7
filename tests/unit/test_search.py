"""The one search: a text is recognised by exact lookups (number, file name, interchange,
transmission id, AS2 Message-ID), the verdict is about what matched, the matches come first,
and an unknown partner is an error (tracker, API, console page, ``edigw find``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.app import Gateway as App
from gateway.cli import main as edigw
from gateway.config import GatewaySettings
from gateway.http.server import HttpServer, build_app
from gateway.store import schema as s
from gateway.tracker.search import answer
from gateway.tracker.verdicts import NoSuchPartner
from gateway.web.auth import Users
from tests.unit.test_explain import ROOT, START, Gateway, order


@pytest.fixture
def world(tmp_path, when):
    return Gateway(tmp_path)


@pytest.fixture
def when():
    from gateway.core import clock

    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


def ask(world: Gateway, text: str, **kw: object):
    return answer(world.store, world.partners, world.tracker, text, archive=world.archive, **kw)


def test_a_file_name_finds_that_file_and_the_verdict_is_about_it(world, when):
    """Searching a file name of three published orders answers about that file (waiting for
    the ERP), not "never received"; its matches come first."""
    tid = world.send(order("1041", "PO-1"), filename="three-orders.edi")
    world.publish()
    when.advance(minutes=5)
    found = ask(world, "Three-Orders.EDI")
    assert found.kind == "file-name" and found.kind_words == "file name"
    assert found.explanation.verdict == "waiting-erp"
    assert [h.transmission_id for h in found.explanation.hits] == [tid]
    data = found.as_dict()
    assert list(data)[:4] == ["q", "matched", "matched_as", "also_matched"]
    assert list(data)[4] == "hits" and data["code"] == "waiting-erp"
    assert data["verdict"] == "waiting for the ERP's acknowledgement"


def test_a_partners_order_number_is_not_answered_by_another_senders_quarantined_file(
        world, when):
    """PO-9 sits only in the raw bytes of a file quarantined from an unknown sender: asked
    for gouden it is never received (that file is not gouden's and is not told); asked
    without a partner it is found in that quarantined file."""
    stranger = world.send(order("77", "PO-9", sender=b"5499999999999"), filename="x.edi")
    world.send(order("1041", "PO-1"), filename="gouden.edi")
    when.advance(minutes=10)
    mine = ask(world, "PO-9", partner="gouden").explanation
    assert mine.verdict == "never-received"
    assert stranger not in {f.ref for f in mine.evidence}
    anyone = ask(world, "PO-9").explanation
    assert anyone.verdict == "quarantined" and stranger in anyone.summary


def test_ids_message_ids_and_interchange_references_are_recognised(world, when):
    """A transmission id, an AS2 Message-ID with or without <>, an interchange reference:
    each says what it is and leads to its transmission."""
    tid = world.send(order("1041", "PO-1"), filename="a.edi", channel="as2")
    with world.store.engine.begin() as conn:
        conn.execute(s.as2_messages.insert().values(
            id="m1", message_id="abc@gouden.example", partner_id="gouden", as2_from="GOUDEN",
            as2_to="US", transmission_id=tid, received_at=START, disposition="processed",
            mdn_mode="sync", mdn_state="sent"))
    for text, kind in ((tid, "transmission-id"), ("<abc@gouden.example>", "as2-message-id"),
                       ("abc@gouden.example", "as2-message-id"), ("1041", "interchange-ref"),
                       ("po-1", "document-number")):
        found = ask(world, text)
        assert found.kind == kind, text
        assert [h.transmission_id for h in found.explanation.hits] == [tid], text
    assert ask(world, "PO-1", partner="quiet").kind is None  # within the partner only


def test_an_unknown_partner_is_an_error_and_a_known_one_without_profile_is_not(world, when):
    """No profile and nothing on record: NoSuchPartner. A partner whose profile was removed
    but whose files are on record is still searchable."""
    world.send(order("1041", "PO-1"))
    with pytest.raises(NoSuchPartner, match="unknown partner 'nope'"):
        ask(world, "PO-1", partner="nope")
    with world.store.engine.begin() as conn:
        conn.execute(s.transmissions.update().values(partner_id="gone"))
    assert ask(world, "orders.edi", partner="gone").kind == "file-name"


def _console(world: Gateway, tmp_path: Path) -> tuple[App, HttpServer]:
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    app = App.open(settings, partners=world.partners)
    Users(app.store).create("vera", "a-long-enough-password", "viewer")
    routes, state = app.console_routes()
    return app, HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()


def test_api_and_page_show_matches_first_and_refuse_an_unknown_partner(world, when, tmp_path):
    """/api/search?q=<file name> finds the file's transmission; the page's matches table
    comes before the verdict's evidence; an unknown partner_id is a 404 naming it."""
    tid = world.send(order("1041", "PO-1"), filename="orders-monday.edi")
    world.publish()
    app, server = _console(world, tmp_path)
    try:
        viewer = httpx.Client(base_url=server.url)
        assert viewer.post("/api/login", json={"username": "vera", "password":
                                               "a-long-enough-password"}).status_code == 200
        data = viewer.get("/api/search", params={"q": "orders-monday.edi"}).json()
        assert data["matched"] == "file-name" and data["hits"][0]["transmission_id"] == tid
        assert list(data).index("hits") < list(data).index("evidence")
        assert viewer.get("/api/search", params={"q": "PO-1", "partner": "gouden"}
                          ).json()["code"] == "waiting-erp"
        refused = viewer.get("/api/search", params={"q": "PO-1", "partner_id": "nope"})
        assert refused.status_code == 404 and "unknown partner 'nope'" in refused.text
        old = viewer.get("/api/search", params={"number": "PO-1"}).json()  # criteria still work
        assert old["hits"][0]["business_number"] == "PO-1"
        page = viewer.get("/search", params={"q": "orders-monday.edi"}).text
        assert "orders-monday.edi is a file name" in page
        assert page.index('class="hits"') < page.index('class="evidence"')
        assert "waiting for the ERP&#39;s acknowledgement" in page
        missing = viewer.get("/search", params={"q": "PO-1", "partner_id": "nope"})
        assert missing.status_code == 404 and "unknown partner" in missing.text
    finally:
        server.stop()
        app.close()


def test_edigw_find_says_what_matched_and_exits_by_the_answer(world, when, tmp_path):
    """find prints the kind and the matches; nothing found exits 1, an unknown partner 2."""
    world.send(order("1041", "PO-1"), filename="orders.edi")
    config = tmp_path / "gateway.toml"
    (tmp_path / "partners").mkdir(exist_ok=True)
    (tmp_path / "partners" / "gouden.toml").write_text(
        'id = "gouden"\nname = "De Gouden Aar"\n[identifiers]\n'
        'unb = [{ id = "5401234000012", qualifier = "14" }]\n')
    config.write_text(f'mappings = "{ROOT / "mappings"}"\npartners = "{tmp_path / "partners"}"\n'
                      f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite3"}"\n'
                      f'[archive]\npath = "{tmp_path / "archive"}"\n')
    run = CliRunner()
    r = run.invoke(edigw, ["--config", str(config), "find", "orders.edi"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("orders.edi is a file name") and "PO-1" in r.stdout
    assert run.invoke(edigw, ["--config", str(config), "find", "PO-404"]).exit_code == 1
    r = run.invoke(edigw, ["--config", str(config), "find", "PO-1", "--partner", "nope"])
    assert r.exit_code == 2 and "unknown partner 'nope'" in r.stderr
