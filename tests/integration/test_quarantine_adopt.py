"""Quarantine to partner in one step, over a real gateway (SQLite store, archive, pipeline):
files of an unknown sender are quarantined; adopting the sender as a new partner (API), or
adding it to an existing one (CLI), writes the profile and processes every held file again
as a new attempt, each now the partner's."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from gateway.cli import main
from gateway.core.senders import UnknownSender, senders_in
from gateway.core.status import TransmissionStatus as T
from tests.conftest import ROOT

NEWCO = "unb:14:5401234000012"
SAMPLES = ROOT / "mappings" / "edifact"
PASSWORD = "correct horse battery staple"


def _ingest(gw, data: bytes, name: str) -> str:
    from gateway.core.ports import Incoming

    p = gw.pipeline
    receipt = p.receive(Incoming(data=data, channel="folder", channel_ref=f"/in/{name}",
                                 filename=name))
    p.acknowledged([receipt], "moved")
    p.process(receipt.transmission_id)
    return receipt.transmission_id


def newco_files() -> list[tuple[bytes, str]]:
    """Three orders of sender 5401234000012 (qualifier 14): the D96A sample and two copies
    with other order numbers and interchange references."""
    d96a = (SAMPLES / "eancom-orders-d96a.sample.edi").read_bytes()
    return [(d96a.replace(b"PO-2024-0107", f"PO-2024-010{n}".encode())
             .replace(b"ICR0042", f"ICR004{n}".encode()), f"newco-{n}.edi")
            for n in (7, 8, 9)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    from gateway.app import Gateway
    from gateway.config import load_settings

    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "brouwer.toml").write_text(
        'id = "brouwer"\nname = "Brouwer Supplies"\n[identifiers]\n'
        'unb = [{ id = "4012345000009", qualifier = "14" }]\n')
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{partners}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "edigw.sqlite3"}"\n'
        f'[archive]\npath = "{tmp_path / "archive"}"\nfsync = false\n'
        f'[outbound]\npath = "{tmp_path / "outbound"}"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n')
    gw = Gateway.open(load_settings(tmp_path / "gateway.toml", env={}))
    for data, name in newco_files():
        _ingest(gw, data, name)
    _ingest(gw, (SAMPLES / "un-invoic-d97a.sample.edi").read_bytes(), "ppl.edi")
    yield gw, tmp_path
    gw.close()


def test_reasons_written_by_identify_read_back_as_their_sender():
    """The wording of core.identify's reasons is what core.senders reads."""
    from gateway.core.errors import UnknownPartner
    from gateway.core.identify import identify
    from gateway.core.ports import Sender

    class Nobody:
        SCHEMES = ("gln", "vat", "siren", "siret", "email", "phone", "as2", "iso6523")

        def get(self, pid):
            return None

        def by_identifier(self, scheme, value):
            return None

        def by_unb_sender(self, sid, qualifier):
            return None

    cases = [([Sender("5401234000043", "14")], None, UnknownSender("unb", "5401234000043", "14")),
             ([Sender("ACME", None)], None, UnknownSender("unb", "ACME")),
             ([Sender("5412345000013", "gln"), Sender("FR123", "vat")], None,
              UnknownSender("gln", "5412345000013")),
             ([], "newco", UnknownSender("partner", "newco")),
             # ISO 6523 ids, written "0192 (NO:ORG) 987654321", the Peppol form too
             ([Sender("0192:987654321", "iso6523"), Sender("FR123", "vat")], None,
              UnknownSender("iso6523", "0192:987654321")),
             # a malformed id (wrong Luhn digit) is named in the reason but is no sender
             ([Sender("73282932000075", "siret"),
               Sender("iso6523-actorid-upis::0208:0202239951", "iso6523")], None,
              UnknownSender("iso6523", "0208:0202239951"))]
    for senders, hint, expected in cases:
        with pytest.raises(UnknownPartner) as exc:
            identify(Nobody(), senders, hint, lambda: "nobody")
        assert senders_in(str(exc.value))[0] == expected
        assert UnknownSender.from_key(expected.key) == expected
    with pytest.raises(UnknownPartner) as exc:
        identify(Nobody(), [Sender("0192:987654321", "iso6523"), Sender("1234:5", "iso6523"),
                            Sender("5401234000012", "gln")], None, lambda: "nobody")
    assert str(exc.value).startswith("unknown sender (0192 (NO:ORG) 987654321, iso6523 1234:5 "
                                      "(malformed: unknown ICD code 1234")
    assert senders_in(str(exc.value)) == [UnknownSender("iso6523", "0192:987654321"),
                                          UnknownSender("gln", "5401234000012")]
    assert senders_in("mail from A@b.example: no partner profile lists this address") == [
        UnknownSender("email", "a@b.example")]


def test_adopt_as_new_partner_over_the_api_processes_every_held_file(world):
    """GET /api/quarantine/senders lists the sender with its three files; POST adopt
    creates partner newco and replays the three: each attempt PROCESSED for newco, the
    quarantined originals no longer listed; the audit trail says who and what."""
    from gateway.http.server import build_app
    from gateway.web.auth import Users

    gw, tmp = world
    Users(gw.store).create("ada", PASSWORD, "admin")
    Users(gw.store).create("vera", PASSWORD, "viewer")
    routes, state = gw.console_routes()
    with TestClient(build_app(routes=routes, state=state)) as client:
        def login(user: str) -> dict[str, str]:
            r = client.post("/api/login", json={"username": user, "password": PASSWORD})
            assert r.status_code == 200, r.text
            return {"X-CSRF-Token": r.json()["csrf_token"]}

        login("vera")
        r = client.get("/api/quarantine/senders")
        assert r.status_code == 200
        page = r.json()
        assert page["total"] == 2 and page["offset"] == 0
        newco = next(s for s in page["items"] if s["key"] == NEWCO)
        assert newco["count"] == 3 and set(newco["samples"]) == {
            "newco-7.edi", "newco-8.edi", "newco-9.edi"}
        assert client.post("/api/quarantine/adopt", json={
            "sender": NEWCO, "new": {"id": "newco", "name": "Newco"}}).status_code == 403
        h = login("ada")
        r = client.post("/api/quarantine/adopt", headers=h, json={
            "sender": "unb:14:999", "new": {"id": "x", "name": "X"}})
        assert r.status_code == 404
        r = client.post("/api/quarantine/adopt", headers=h, json={
            "sender": NEWCO, "new": {"id": "newco", "name": "Newco", "documents": [
                {"type": "order", "format": "edifact", "mapping": "nope"}]}})
        assert r.status_code == 422 and "nope" in r.text  # refused: nothing written, replayed
        assert not (tmp / "partners" / "newco.toml").exists()
        assert client.get("/api/quarantine/senders").json()["total"] == 2
        r = client.post("/api/quarantine/adopt", headers=h, json={
            "sender": NEWCO, "new": {"id": "newco", "name": "Newco Retail"}})
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["created"] and done["reprocessed"] == 3
        assert done["outcomes"] == {T.PROCESSED: 3}
        assert {a["partner_id"] for a in done["attempts"]} == {"newco"}
        assert [s["key"] for s in client.get("/api/quarantine/senders").json()["items"]] == [
            "unb:ZZ:PPL-SUPPLIER"]
    profile = tomllib.loads((tmp / "partners" / "newco.toml").read_text())
    assert profile["identifiers"]["unb"] == [{"id": "5401234000012", "qualifier": "14"}]
    for a in done["attempts"]:
        t = gw.store.get_transmission(a["attempt_id"])
        assert t.reprocess_of == a["transmission_id"] and t.partner_id == "newco"
    from gateway.store.audit import AuditLog

    [entry] = AuditLog(gw.store).list(action="partner.adopt")
    assert entry.actor == "ada" and entry.after["reprocessed"] == 3


def test_adopt_into_an_existing_partner_from_the_cli(world):
    """``partners senders --json`` lists the sender; ``partners adopt --extend brouwer``
    adds its UNB id to brouwer and processes its files for brouwer (exit 0); a second run
    finds nothing waiting (exit 1, said on stderr)."""
    gw, tmp = world
    gw.close()
    config = ["--config", str(tmp / "gateway.toml")]
    r = CliRunner().invoke(main, [*config, "partners", "senders", "--json"])
    assert r.exit_code == 0, r.output
    assert {s["key"]: s["count"] for s in json.loads(r.output)}[NEWCO] == 3
    r = CliRunner().invoke(main, [*config, "partners", "adopt", NEWCO, "--extend", "brouwer",
                                  "--by", "otto", "--wait", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert not done["created"] and done["partner_id"] == "brouwer"
    assert done["outcomes"] == {T.PROCESSED: 3}
    profile = tomllib.loads((tmp / "partners" / "brouwer.toml").read_text())
    assert {"id": "5401234000012", "qualifier": "14"} in profile["identifiers"]["unb"]
    r = CliRunner().invoke(main, [*config, "partners", "adopt", NEWCO, "--extend", "brouwer"])
    assert r.exit_code == 1 and "no quarantined file waits" in r.output
    r = CliRunner().invoke(main, [*config, "partners", "adopt", NEWCO])
    assert r.exit_code == 1 and "--extend" in r.output


def test_adopt_a_peppol_participant_from_the_cli(world):
    """A UBL invoice whose seller is named only by a 0192 (NO:ORG) participant id is
    quarantined under ``iso6523:0192:987654321``; ``partners adopt --extend brouwer`` writes
    ``iso6523 = ["0192:987654321"]`` into brouwer's profile and processes the file for it."""
    gw, tmp = world
    invoice = (ROOT / "mappings" / "xml" / "ubl-invoice.sample.xml").read_bytes()
    seller, rest = invoice.split(b"</cac:AccountingSupplierParty>", 1)
    for old, new in ((b'schemeID="0088">3012345000017<', b'schemeID="0192">987654321<'),
                     (b'schemeID="0009">73282932000074<', b'schemeID="0192">987654321<'),
                     (b"<cbc:CompanyID>FR44732829320</cbc:CompanyID>", b"<cbc:CompanyID/>"),
                     (b'<cbc:CompanyID schemeID="0002">732829320</cbc:CompanyID>', b"")):
        assert old in seller
        seller = seller.replace(old, new)
    tid = _ingest(gw, seller + b"</cac:AccountingSupplierParty>" + rest, "nord.xml")
    row = gw.store.get_transmission(tid)
    assert row.status == T.QUARANTINED and "0192 (NO:ORG) 987654321" in row.reason
    gw.close()
    config = ["--config", str(tmp / "gateway.toml")]
    r = CliRunner().invoke(main, [*config, "partners", "senders", "--json"])
    assert r.exit_code == 0, r.output
    key = "iso6523:0192:987654321"
    listed = {s["key"]: s for s in json.loads(r.output)}
    assert listed[key]["count"] == 1 and listed[key]["label"] == (
        "ISO 6523 0192 (NO:ORG) 987654321")
    r = CliRunner().invoke(main, [*config, "partners", "adopt", key, "--extend", "brouwer",
                                  "--by", "otto", "--wait", "0.1", "--json"])
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    assert done["partner_id"] == "brouwer" and done["outcomes"] == {T.PROCESSED: 1}
    profile = tomllib.loads((tmp / "partners" / "brouwer.toml").read_text())
    assert profile["identifiers"]["iso6523"] == ["0192:987654321"]
