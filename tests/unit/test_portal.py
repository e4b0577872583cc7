"""The client portal: the ``portal`` channel (receive first, the HTTP answer is the
acknowledgement), its pages and its API, as a client of one partner against the data of
another, and the words a client reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import Gateway
from gateway.channels.portal.inbox import (
    EmptyUpload,
    PortalInbox,
    Upload,
    UploadTooLarge,
    safe_filename,
)
from gateway.config import GatewaySettings, PartnerDirectory, load_partners
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt
from gateway.core.scope import Scope
from gateway.core.status import TransmissionStatus as T
from gateway.http.server import build_app
from gateway.store.read import portal as q
from gateway.tracker import explain as verdicts
from gateway.web import portal_data, portal_words
from gateway.web.auth import Users

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"  # sender ...012
OTHERS = ROOT / "mappings" / "edifact" / "eancom-orders-d01b.sample.edi"  # sender ...043
PASSWORD = "a-long-enough-password"
PARTNERS = {
    "acme": ('unb = [{ id = "5401234000012", qualifier = "14" }]',
             '[edifact]\ncontrl = "always"\n'
             '[outbound]\nformats = {price-list = "csv"}\nprice_lists = ["spring"]\n'),
    "other": ('unb = [{ id = "5401234000043", qualifier = "14" }]', ""),
}


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "partners").mkdir()
    for pid, (unb, rest) in PARTNERS.items():
        (tmp_path / "partners" / f"{pid}.toml").write_text(
            f'id = "{pid}"\nname = "{pid.title()} Stores"\n[identifiers]\n{unb}\n{rest}',
            encoding="utf-8")
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'edigw.sqlite3'}"},
                               archive={"path": tmp_path / "archive", "fsync": False},
                               outbound={"path": tmp_path / "outbound",
                                         "sender_id": "4001234000015"})
    gateway = Gateway.open(settings, partners=load_partners(tmp_path / "partners"))
    users = Users(gateway.store)
    users.create("shop", PASSWORD, "client", partner_id="acme")
    users.create("rival", PASSWORD, "client", partner_id="other")
    users.create("vera", PASSWORD, "viewer")
    yield gateway
    gateway.close()


def _client(gw: Any, username: str) -> TestClient:
    routes, state = gw.console_routes()
    client = TestClient(build_app(routes=routes, state=state))
    r = client.post("/api/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def _ingest(gw: Any, data: bytes, name: str) -> str:
    """A file received through the folder channel's path and processed."""
    p = gw.pipeline
    receipt = p.receive(Incoming(data=data, channel="folder", channel_ref=f"/in/{name}",
                                 filename=name))
    p.acknowledged([receipt], "moved")
    p.process(receipt.transmission_id)
    return receipt.transmission_id


# -- the channel --------------------------------------------------------------------------------


class _Receiver:
    """A receiver whose store is down, or that records what it was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.received: list[Incoming] = []
        self.acked: list[tuple[list[Receipt], str]] = []

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        if self.fail:
            raise StoreError("database is locked")
        self.received += items
        return [Receipt(transmission_id=f"t{i}") for i, _ in enumerate(items)]

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        self.acked.append((receipts, detail))


def test_a_store_failure_acknowledges_nothing_and_processes_nothing() -> None:
    """Receive first: when the store cannot record the upload, the error goes to the caller
    (who answers 5xx), nothing is acknowledged and nothing handed to processing."""
    handed: list[list[Receipt]] = []
    receiver = _Receiver(fail=True)
    inbox = PortalInbox(receiver=receiver, hand_over=handed.append)
    with pytest.raises(StoreError):
        inbox.accept(Upload("acme", "shop", "po.edi", b"UNB+..."))
    assert receiver.acked == [] and handed == []


def test_an_upload_is_received_under_its_partner_then_acknowledged_then_processed() -> None:
    handed: list[list[Receipt]] = []
    receiver = _Receiver()
    got = PortalInbox(receiver=receiver, hand_over=handed.append).accept(
        Upload("acme", "shop", "../../etc/po.edi", b"data"))
    item = receiver.received[0]
    assert (item.channel, item.partner_hint, item.filename) == ("portal", "acme", "po.edi")
    assert item.channel_ref == got.upload_id
    assert receiver.acked[0][0][0].transmission_id == got.transmission_id == "t0"
    assert "shop" in receiver.acked[0][1]
    assert [r.transmission_id for r in handed[0]] == ["t0"]


def test_empty_and_oversized_files_are_refused_before_anything_is_stored() -> None:
    receiver = _Receiver()
    inbox = PortalInbox(receiver=receiver, hand_over=None, max_size=10)
    with pytest.raises(EmptyUpload, match="po.edi is empty"):
        inbox.accept(Upload("acme", "shop", "po.edi", b""))
    with pytest.raises(UploadTooLarge, match="11 bytes; the portal takes 10 at most"):
        inbox.accept(Upload("acme", "shop", "po.edi", b"x" * 11))
    assert receiver.received == []


@pytest.mark.parametrize(("sent", "kept"), [
    ("../../etc/passwd", "passwd"), ("..\\..\\boot.ini", "boot.ini"), ("", "upload"),
    (None, "upload"), ("..", "upload"), (".hidden.edi", "hidden.edi"),
    ("C:\\orders\\po 1.edi", "po 1.edi"), ("po\x00\n<script>.edi", "po_script_.edi"),
    ("a" * 300 + ".edi", "a" * 116 + ".edi")])
def test_file_names_never_lead_anywhere(sent: str | None, kept: str) -> None:
    assert safe_filename(sent) == kept


# -- upload over HTTP ---------------------------------------------------------------------------


def test_a_client_uploads_a_file_and_sees_it_processed_as_its_own(gw: Any) -> None:
    shop = _client(gw, "shop")
    r = shop.post("/api/portal/upload", params={"filename": "order.edi"},
                  content=SAMPLE.read_bytes())
    assert r.status_code == 201, r.text
    tid = r.json()["transmission_id"]
    t = gw.store.get_transmission(tid)
    assert (t.channel, t.partner_id, t.filename) == ("portal", "acme", "order.edi")
    assert t.status in (T.PROCESSED, T.PUBLISHED) and t.acknowledged_at is not None
    page = shop.get("/portal/transmissions")
    assert page.status_code == 200 and tid in page.text and "order.edi" in page.text
    one = shop.get(f"/portal/transmissions/{tid}")
    assert one.status_code == 200 and "PO-2024-0107" in one.text
    assert "4020000012342" in one.text  # a line of the order


def test_the_upload_page_takes_multipart_with_its_csrf_token(gw: Any) -> None:
    shop = _client(gw, "shop")
    token = shop.headers.pop("X-CSRF-Token")
    refused = shop.post("/portal/upload", files={"file": ("po.edi", SAMPLE.read_bytes())},
                        follow_redirects=False)
    assert refused.status_code == 403
    done = shop.post("/portal/upload", files={"file": ("po.edi", SAMPLE.read_bytes())},
                     data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/portal/transmissions/")
    empty = shop.post("/portal/upload", files={"file": ("nothing.edi", b"")},
                      data={"csrf_token": token})
    assert empty.status_code == 400 and "nothing.edi is empty" in empty.text


def test_an_empty_upload_is_refused_with_a_clear_error_and_nothing_stored(gw: Any) -> None:
    shop = _client(gw, "shop")
    r = shop.post("/api/portal/upload", params={"filename": "po.edi"}, content=b"")
    assert r.status_code == 400 and "po.edi is empty" in r.json()["detail"]
    none = shop.post("/api/portal/upload", files={"other": ("x", b"y")})
    assert none.status_code == 400 and "multipart field 'file'" in none.json()["detail"]
    assert gw.store.counts_by_status() == {}


def test_an_upload_over_the_limit_is_refused_413(gw: Any) -> None:
    gw.pipeline.max_size = 100
    shop = _client(gw, "shop")
    r = shop.post("/api/portal/upload", params={"filename": "big.edi"}, content=b"x" * 101)
    assert r.status_code == 413 and "takes 100 at most" in r.json()["detail"]
    assert gw.store.counts_by_status() == {}


def test_a_store_outage_answers_503_and_records_nothing(gw: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def down(items: list[Incoming]) -> list[Receipt]:
        raise StoreError("could not connect")

    monkeypatch.setattr(gw.pipeline, "receive_many", down)
    shop = _client(gw, "shop")
    r = shop.post("/api/portal/upload", params={"filename": "po.edi"},
                  content=SAMPLE.read_bytes())
    assert r.status_code == 503 and "send it again" in r.json()["detail"]
    assert gw.store.counts_by_status() == {}


def test_a_file_naming_another_partner_is_quarantined_never_attributed_to_it(gw: Any) -> None:
    """Identification refuses a file whose UNB sender is another partner's: quarantined,
    kept under the uploader's partner; the other partner never sees it."""
    shop, rival = _client(gw, "shop"), _client(gw, "rival")
    r = shop.post("/api/portal/upload", params={"filename": "not-mine.edi"},
                  content=OTHERS.read_bytes())
    tid = r.json()["transmission_id"]
    t = gw.store.get_transmission(tid)
    assert t.status == T.QUARANTINED and t.partner_id == "acme"
    assert "declared by another partner" in (t.reason or "") and "partner other" not in t.reason
    assert gw.store.documents_of(tid) == []
    assert rival.get(f"/portal/transmissions/{tid}").status_code == 404
    assert tid not in rival.get("/api/transmissions").text
    mine = shop.get(f"/portal/transmissions/{tid}")
    assert mine.status_code == 200 and "On hold for checking" in mine.text


# -- scope: another partner's data --------------------------------------------------------------


def test_a_client_never_reaches_another_partners_file_by_any_portal_route(gw: Any) -> None:
    theirs = _ingest(gw, OTHERS.read_bytes(), "other.edi")  # other's order, and its CONTRL
    mine = _ingest(gw, SAMPLE.read_bytes(), "acme.edi")
    shop = _client(gw, "shop")
    assert shop.get(f"/portal/transmissions/{theirs}").status_code == 404
    assert shop.get(f"/portal/transmissions/{mine}").status_code == 200
    listed = shop.get("/portal/transmissions").text
    assert mine in listed and theirs not in listed
    assert shop.get(f"/portal/documents/{theirs}/download").status_code == 404
    assert shop.get(f"/api/portal/documents/{theirs}/download").status_code == 404
    assert all(d["transmission_id"] != theirs
               for d in shop.get("/api/portal/documents").json()["items"])
    assert shop.get("/api/transmissions/" + theirs).status_code == 404
    found = shop.get("/api/portal/search", params={"number": "PO-2024-0107"}).json()
    assert found["verdict"] == verdicts.IN_PROGRESS and found["transmissions"] == [mine]
    theirs_number = shop.get("/api/portal/search", params={"number": "PO-2024-0108"}).json()
    assert theirs_number["verdict"] == verdicts.NEVER_RECEIVED
    assert theirs_number["transmissions"] == []


def test_staff_get_403_in_the_portal_and_clients_403_on_staff_pages(gw: Any) -> None:
    vera, shop = _client(gw, "vera"), _client(gw, "shop")
    assert vera.get("/portal").status_code == 403
    assert vera.get("/api/portal/documents").status_code == 403
    assert shop.get("/transmissions").status_code == 403
    assert shop.get("/api/price-lists").status_code == 403
    anonymous = TestClient(build_app(routes=gw.console_routes()[0],
                                     state=gw.console_routes()[1]))
    assert anonymous.get("/api/portal/documents").status_code == 401
    assert anonymous.get("/portal", follow_redirects=False).status_code == 303


def test_the_store_queries_refuse_an_unrestricted_scope(gw: Any) -> None:
    with pytest.raises(ValueError, match="client's scope"):
        q.sent_documents(gw.store, Scope())


# -- documents sent, price list, demo -----------------------------------------------------------


def test_a_client_downloads_the_acknowledgement_sent_to_it_as_sent(gw: Any) -> None:
    tid = _ingest(gw, SAMPLE.read_bytes(), "acme.edi")
    contrl = [o for o in gw.store.outbound_of(tid) if o.kind == "contrl"][0]
    shop = _client(gw, "shop")
    page = shop.get("/api/portal/documents").json()
    listed = page["items"]
    assert [d["id"] for d in listed] == [contrl.id] and page["total"] == 1
    assert listed[0]["label"] == "Acknowledgement (CONTRL)"
    got = shop.get(f"/api/portal/documents/{contrl.id}/download")
    assert got.status_code == 200 and got.content == gw.archive.get(contrl.sha256)
    assert "attachment" in got.headers["content-disposition"]
    page = shop.get("/portal/documents")
    assert contrl.filename in page.text
    assert _client(gw, "rival").get(
        f"/portal/documents/{contrl.id}/download").status_code == 404


def test_no_price_list_yet_is_a_404_page_then_the_list_sent_is_downloaded(gw: Any) -> None:
    shop = _client(gw, "shop")
    none = shop.get("/portal/price-list")
    assert none.status_code == 404 and "No price list yet" in none.text
    assert shop.get("/api/portal/price-list").status_code == 404
    sample = ROOT / "mappings" / "outbound" / "csv" / "csv-pricelist-out.sample.json"
    results = gw.distributor.distribute(sample.read_bytes(), list_id="spring", origin="erp",
                                        ref="m1")
    assert [r.status for r in results] == ["RENDERED"], results
    row = gw.store.outbound_of(results[0].transmission_id)[0]
    got = shop.get("/portal/price-list")
    assert got.status_code == 200 and got.content == gw.archive.get(row.sha256)
    assert got.headers["content-type"].startswith("text/csv")
    api = shop.get("/api/portal/price-list")
    assert api.headers["x-edigw-price-list-source"] == "sent"
    assert _client(gw, "rival").get("/api/portal/price-list").status_code == 404


def test_a_changes_only_partner_gets_its_whole_list_rendered_now(gw: Any) -> None:
    sample = ROOT / "mappings" / "outbound" / "csv" / "csv-pricelist-out.sample.json"
    gw.distributor.distribute(sample.read_bytes(), list_id="spring", origin="erp", ref="m1")
    acme = gw.partners.get("acme")
    changes = acme.model_copy(update={"outbound": acme.outbound.model_copy(
        update={"price_list_mode": "changes"})})
    gw.partners.replace(PartnerDirectory([changes, gw.partners.get("other")]))
    got = portal_data.current_price_list(gw, Scope("acme"))
    assert got.source == "rendered" and got.filename.endswith(".csv") and got.data


def test_the_demo_space_offers_samples_as_if_sent_by_the_partner(gw: Any) -> None:
    shop = _client(gw, "shop")
    _ingest(gw, SAMPLE.read_bytes(), "acme.edi")
    demo = shop.get("/api/portal/demo").json()
    assert demo["state"] == "live"
    ids = {s["mapping"] for s in demo["samples"]}
    assert "eancom-orders-d01b" in ids and "eancom-invoic-d96a" in ids
    got = shop.get("/api/portal/demo/samples/eancom-orders-d01b")
    assert got.status_code == 200 and b"+5401234000012:14+" in got.content
    assert b"5401234000043" not in got.content.split(b"'")[0 if not got.content.startswith(
        b"UNA") else 1]
    assert shop.get("/api/portal/demo/samples/..%2F..%2Fgateway").status_code == 404
    result = demo["results"][0]
    assert result["documents"][0]["number"] == "PO-2024-0107"
    assert result["documents"][0]["lines"][0]["gtin"] == "4020000012342"
    page = shop.get("/portal/demo")
    assert page.status_code == 200 and "eancom-orders-d01b" in page.text
    # The personalised sample goes back in as the partner's own order.
    up = shop.post("/api/portal/upload", params={"filename": "sample.edi"},
                   content=got.content)
    t = gw.store.get_transmission(up.json()["transmission_id"])
    assert t.partner_id == "acme" and t.status != T.QUARANTINED, t.reason


def test_the_home_page_names_the_partner_and_its_state(gw: Any) -> None:
    shop = _client(gw, "shop")
    home = shop.get("/portal")
    assert home.status_code == 200
    assert "Acme Stores" in home.text and "<b>live</b>" in home.text
    assert 'href="/transmissions"' not in home.text  # staff links hidden from clients
    assert "Where is my order?" in home.text


# -- words --------------------------------------------------------------------------------------


def test_every_verdict_and_status_has_client_words() -> None:
    assert set(verdicts.VERDICTS) <= set(portal_words.VERDICT_SENTENCES)
    assert set(verdicts.VERDICTS) <= set(portal_words.VERDICT_TONES)
    assert set(T) <= set(portal_words.TRANSMISSION_WORDS)
    for verdict in verdicts.VERDICTS:
        sentence = portal_words.verdict_sentence(verdict, "order PO-1")
        assert "PO-1" in sentence and "{" not in sentence


def test_a_file_kept_back_by_the_partners_state_is_not_told_as_a_doubt_about_its_sender():
    from gateway.core import lifecycle

    held = portal_words.transmission_words(T.QUARANTINED, lifecycle.SUSPENDED_REASON)
    assert (held.label, held.tone) == ("Held", "wait") and "paused" in held.sentence
    kept = portal_words.transmission_words(T.QUARANTINED, lifecycle.DRAFT_REASON)
    assert (kept.label, kept.tone) == ("Kept", "wait") and "not yet open" in kept.sentence
    doubt = portal_words.transmission_words(T.QUARANTINED, "unknown sender id 1")
    assert doubt == portal_words.TRANSMISSION_WORDS[T.QUARANTINED]


def test_a_rejection_reason_reads_without_the_stage() -> None:
    said = portal_words.verdict_sentence(verdicts.FAILED, "order PO-1",
                                         "validate: quantity 'xx' is not a number")
    assert said == ("We received order PO-1 but could not read it, so it was not passed "
                    "on: Quantity 'xx' is not a number. Please correct it and send it again.")
    assert portal_words.plain_reason(None) is None
    assert len(portal_words.plain_reason("x" * 1000) or "") == 400


def test_a_reason_shown_to_a_client_keeps_no_excerpt_of_the_file() -> None:
    said = portal_words.plain_reason("detect: not a recognised format (readers: pdf, "
                                     "edifact); file starts with '{\"partner\":\"x\"'")
    assert said == "Not a recognised format"


def test_a_filter_naming_another_partner_answers_404_on_portal_routes(gw: Any) -> None:
    shop = _client(gw, "shop")
    for path in ("/portal", "/portal/search", "/portal/demo", "/api/portal/documents",
                 "/api/portal/demo", "/api/portal/price-list"):
        assert shop.get(path, params={"partner": "other"}).status_code == 404, path
    assert shop.get("/api/portal/documents", params={"partner": "acme"}).status_code == 200
    r = shop.post("/api/portal/upload", params={"partner": "other", "filename": "x.edi"},
                  content=SAMPLE.read_bytes())
    assert r.status_code == 404 and gw.store.counts_by_status() == {}


def _many_orders(n: int) -> bytes:
    """The sample interchange with its one order repeated ``n`` times (PO-1 … PO-n)."""
    text = SAMPLE.read_text(encoding="utf-8")
    head, rest = text.split("UNH+", 1)
    body, _ = rest.split("UNZ+", 1)
    message = "UNH+" + body
    copies = [message.replace("UNH+107+", f"UNH+M{i}+").replace("UNT+37+107", f"UNT+37+M{i}")
              .replace("PO-2024-0107", f"PO-{i}") for i in range(1, n + 1)]
    return (head + "".join(copies) + f"UNZ+{n}+ICR0042'\n").encode()


def test_a_big_file_of_a_client_is_shown_a_page_of_documents_at_a_time(gw: Any) -> None:
    tid = _ingest(gw, _many_orders(45), "many.edi")
    assert len(gw.store.documents_of(tid)) == 45
    shop = _client(gw, "shop")
    first = shop.get(f"/portal/transmissions/{tid}")
    assert first.status_code == 200
    assert "1–20 of 45 documents" in first.text and "?offset=20" in first.text
    assert "PO-1 " in first.text and "PO-20 " in first.text
    assert "PO-21 " not in first.text and "PO-45 " not in first.text
    last = shop.get(f"/portal/transmissions/{tid}", params={"offset": 40})
    assert "41–45 of 45 documents" in last.text and "PO-45" in last.text
    assert "PO-39 " not in last.text and "?offset=20" in last.text  # previous
    assert shop.get(f"/portal/transmissions/{tid}", params={"offset": -1}).status_code == 422
