"""Tracking what edigw sends (issue 16, item 5): the log's direction, one outbound
transmission's rows and timeline, the tracker's outbound rules (delivery-unconfirmed,
outbound-failed, order-response-missing), the inbound rules left alone by outbound
traffic, and reprocessing an outbound transmission (a resend)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

from gateway.channels.intake import OutboundIntake, OutboundResult
from gateway.channels.outbound import Delivery, DeliveryRefused, OutboundDispatcher
from gateway.cli.common import CliContext
from gateway.cli.transmissions import log_cmd, show
from gateway.config import (
    Identifiers,
    Partner,
    PartnerDirectory,
    PartnerOutbound,
    TrackerSettings,
    UnbIdentifier,
)
from gateway.core import clock
from gateway.core.errors import ReprocessError
from gateway.core.reprocess import reprocess
from gateway.formats.render import OutboundMappings, RenderContext, RenderError
from gateway.store import tracking
from gateway.store.read.transmissions import LogQuery, transmission_page
from gateway.store.records import LogFilter, OutboundRow
from gateway.tracker.alerts import AlertBook
from gateway.tracker.engine import Tracker
from gateway.tracker.rules import (
    TrackerContext,
    delivery_unconfirmed,
    duplicates,
    failures,
    order_response_missing,
    outbound_failed,
    processing_stalled,
)
from tests.unit.test_explain import GOUDEN, ROOT, START, order
from tests.unit.test_explain import Gateway as InboundWorld

NUMBER_FIELD = {"invoice": "invoice_number", "order-response": "order_number"}


@dataclass
class Body:
    text: str
    content_type: str = "text/plain"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return f"REF {control_ref}\n{self.text}".encode()


@dataclass
class FakeMapping:
    """Renders the document's number; refuses numbers that start with BAD."""

    id: str
    document: str
    syntax: str = "edifact"
    aliases: tuple[str, ...] = ("plain",)
    uses_control_ref: bool = True
    file: str = "plain.yaml"
    suffix: str = ".edi"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> Body:
        number = document[NUMBER_FIELD[self.document]]
        if number.startswith("BAD"):
            raise RenderError(f"cannot render {number}", mapping=self.id, path="number")
        return Body(f"{self.document} {number} for {ctx.recipient_id}")


class FakeSender:
    """``mode``: "sent" (handed over, a receipt to come), "ok" (delivered at once, as a
    folder rename), "down" (raises: retried), "refuse" (a negative MDN)."""

    def __init__(self) -> None:
        self.mode = "sent"
        self.sent: list[str] = []

    def send(self, row: OutboundRow, data: bytes, partner: Partner | None) -> str | Delivery:
        if self.mode == "down":
            raise ConnectionError("sftp.gouden.example: connection refused")
        if self.mode == "refuse":
            raise DeliveryRefused("disposition: processed/error: decryption-failed")
        self.sent.append(row.filename)
        if self.mode == "ok":
            return f"{row.kind} written to /partners/gouden/in/{row.filename}"
        return Delivery(detail=f"{row.kind} handed over", delivered=False,
                        remote_id=f"<{row.id}@edigw>")


def invoice(number: str, **extra: Any) -> bytes:
    return json.dumps({"schema": "edigw.invoice/1", "invoice_number": number, "currency": "EUR",
                       "lines": [{"quantity": "2", "line_net_amount": "10.00"}],
                       "totals": {"tax_exclusive": "10.00", "tax_inclusive": "12.00"},
                       **extra}).encode()


def order_response(number: str, status: str = "accepted") -> bytes:
    return json.dumps({"schema": "edigw.order-response/1", "response_number": f"R-{number}",
                       "order_number": number, "status": status,
                       "lines": [{"quantity": "1"}]}).encode()


class World(InboundWorld):
    """The inbound test gateway (pipeline over SQLite, test clock) plus the outbound spine:
    partner gouden receives invoices and order responses (automatic) by a fake sender."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        gouden = Partner(
            id="gouden", name="De Gouden Aar",
            identifiers=Identifiers(unb=[UnbIdentifier(id=GOUDEN.decode(), qualifier="14")]),
            outbound=PartnerOutbound(formats={"invoice": "plain", "order-response": "plain"},
                                     delivery_minutes=30, order_responses="auto",
                                     order_response_minutes=60))
        quiet = Partner(id="quiet", name="Quiet Ltd",
                        identifiers=Identifiers(unb=[UnbIdentifier(id="5400000000001")]))
        self.partners = PartnerDirectory([gouden, quiet])
        self.pipeline.partners = self.partners
        self.sender = FakeSender()
        self.intake = OutboundIntake(
            store=self.store, archive=self.archive, partners=self.partners.get,
            mappings=OutboundMappings({
                "plain-invoice": FakeMapping("plain-invoice", "invoice"),
                "plain-ordrsp": FakeMapping("plain-ordrsp", "order-response")}),
            sender_id="5412345000013")
        self.dispatcher = OutboundDispatcher(
            self.store, self.archive, senders={"folder": self.sender},
            partner=self.partners.get, max_attempts=2, retry_initial=0.0, retry_max=0.0)
        self.tracker = TrackerSettings(timezone="Europe/Paris")

    def out(self, data: bytes, ref: str | None = None) -> OutboundResult:
        return self.intake.accept(data, origin="erp", ref=ref, partner="gouden")

    def deliver(self) -> int:
        """One delivery round. The dispatcher sets its back-off by the real clock while the
        store runs on the test's (2024): rows due by tomorrow, real time, are taken."""
        due = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        return sum(self.dispatcher.deliver_one(row, self.sender)
                   for row in self.store.pending_outbound(now=due))

    def check(self, *rules: Any, minutes: float = 0) -> Any:
        return Tracker(self.tracker, self.partners, self.store, rules=list(rules)).check(
            clock.now() + dt.timedelta(minutes=minutes))

    def open_alerts(self, kind: str) -> list[Any]:
        return [a for a in AlertBook(self.store).list(status=("open", "acknowledged"))
                if a.kind == kind]


@pytest.fixture
def when():
    c = clock.FixedClock(START)
    clock.set_clock(c)
    yield c
    clock.set_clock(None)


@pytest.fixture
def world(tmp_path, when):
    return World(tmp_path)


# -- the log and one transmission ---------------------------------------------------------------

@click.group()
@click.option("--config")
@click.pass_context
def edigw(ctx: click.Context, config: str) -> None:
    ctx.obj = CliContext(config)


edigw.add_command(log_cmd)
edigw.add_command(show)


def _config(tmp_path: Path) -> str:
    path = tmp_path / "gateway.toml"
    (tmp_path / "partners").mkdir(exist_ok=True)
    path.write_text(f'mappings = "{ROOT / "mappings"}"\npartners = "{tmp_path / "partners"}"\n'
                    f'[store]\nurl = "sqlite:///{tmp_path / "db.sqlite3"}"\n'
                    f'[archive]\npath = "{tmp_path / "archive"}"\nfsync = false\n')
    return str(path)


def test_the_log_shows_and_filters_the_direction(world, tmp_path):
    inbound = world.send(order("1041", "PO-1"))
    sent = world.out(invoice("INV-1"), ref="m1")
    page = transmission_page(world.store, LogQuery(direction="out"), limit=10)
    assert [r.id for r in page.rows] == [sent.transmission_id] and page.total == 1
    assert [r.id for r in world.store.log(LogFilter(direction="in"))] == [inbound]
    assert len(transmission_page(world.store, LogQuery(), limit=10).rows) == 2
    config = _config(tmp_path)
    out = CliRunner().invoke(edigw, ["--config", config, "log", "--direction", "out"],
                             catch_exceptions=False).output
    assert sent.transmission_id in out and inbound not in out
    assert " out " in out and "RENDERED (to deliver)" in out
    both = CliRunner().invoke(edigw, ["--config", config, "log"]).output
    assert " in " in both and " out " in both
    bad = CliRunner().invoke(edigw, ["--config", config, "log", "--direction", "up"])
    assert bad.exit_code == 2


def test_show_lists_the_outbound_row_and_the_delivery_timeline(world, tmp_path, when):
    world.sender.mode = "down"
    sent = world.out(invoice("INV-7"), ref="m7")
    world.deliver()  # fails once: retried
    world.sender.mode = "sent"
    world.deliver()
    row = world.store.outbound_of(sent.transmission_id)[0]
    world.store.record_receipt(row.id, ok=True, receipt="CONTRL 9: interchange 1 acknowledged")
    config = _config(tmp_path)
    text = CliRunner().invoke(edigw, ["--config", config, "show", sent.transmission_id],
                              catch_exceptions=False).output
    assert "DELIVERED" in text and "outbound: a document edigw sends" in text
    for word in ("rendered", "delivery-retry", "invoice-sent", "receipt",
                 "sent to the partner (1)", "control ref", "remote id", "<" + row.id,
                 "delivered at", "CONTRL 9: interchange 1 acknowledged",
                 "connection refused"):
        assert word in text, word
    data = json.loads(CliRunner().invoke(edigw, ["--config", config, "show", "--json",
                                                 sent.transmission_id]).output)
    out = data["outbound"][0]
    assert data["direction"] == "out" and out["control_ref"] == "1"
    assert out["attempts"] == 2 and out["receipt"].startswith("CONTRL 9")
    assert out["delivered_at"] and out["remote_id"] == f"<{row.id}@edigw>"


# -- the console and the API --------------------------------------------------------------------

PASSWORD = "a-long-enough-password"


@pytest.fixture
def console(tmp_path):
    from gateway.app import Gateway
    from gateway.config import GatewaySettings, load_partners
    from gateway.http.server import HttpServer, build_app
    from gateway.web.auth import Users

    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "gouden.toml").write_text(
        'id = "gouden"\nname = "De Gouden Aar"\n'
        f'[identifiers]\nunb = [{{ id = "{GOUDEN.decode()}", qualifier = "14" }}]\n'
        '[outbound]\nformats = { invoice = "plain" }\n')
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=partners,
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=load_partners(partners))
    assert gw.intake is not None and gw.outbound is not None
    gw.intake.mappings = OutboundMappings({"plain-invoice": FakeMapping("plain-invoice",
                                                                        "invoice")})
    gw.intake.sender_id = "5412345000013"
    sender = FakeSender()
    gw.outbound.senders["folder"] = sender
    for name, role in (("vera", "viewer"), ("otto", "operator")):
        Users(gw.store).create(name, PASSWORD, role)
    routes, state = gw.console_routes()
    server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
    yield gw, server, sender
    server.stop()
    gw.close()


def _login(server: Any, user: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url)
    r = client.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def test_console_and_api_show_direction_outbound_rows_and_resend(console):
    gw, server, sender = console
    from gateway.core.ports import Incoming

    inbound = gw.pipeline.receive(Incoming(data=b"hello", channel="folder", filename="x.txt"))
    sent = gw.intake.accept(invoice("INV-3"), origin="erp", ref="m3", partner="gouden")
    sender.mode = "ok"
    gw.outbound.deliver_pending()
    viewer = _login(server, "vera")
    api = viewer.get("/api/transmissions", params={"direction": "out"}).json()
    assert [i["id"] for i in api["items"]] == [sent.transmission_id]
    assert api["items"][0]["direction"] == "out" and api["items"][0]["status"] == "DELIVERED"
    assert viewer.get("/api/transmissions", params={"direction": "sideways"}).status_code == 422
    ins = viewer.get("/api/transmissions", params={"direction": "in"}).json()["items"]
    assert [i["id"] for i in ins] == [inbound.transmission_id]
    view = viewer.get(f"/api/transmissions/{sent.transmission_id}").json()
    assert view["outbound"][0]["control_ref"] == "1"
    assert view["outbound"][0]["delivered_at"] and view["outbound"][0]["status"] == "DELIVERED"
    assert [e["event"] for e in view["timeline"]][:3] == ["received", "rendered",
                                                           "invoice-delivered"]
    page = viewer.get("/transmissions", params={"direction": "out"}).text
    assert 'class="st-delivered"' in page and 'class="direction"' in page
    assert "x.txt" not in page and 'value="out" selected' in page
    one = viewer.get(f"/transmissions/{sent.transmission_id}").text
    assert "Sent to the partner" in one and "badge st-delivered" in one
    assert "<td>1</td>" in one  # the control reference
    operator = _login(server, "otto")
    assert "Send again" in operator.get(f"/transmissions/{sent.transmission_id}").text
    r = operator.post(f"/api/transmissions/{sent.transmission_id}/reprocess",
                      json={"reason": "the partner lost it"})
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["status"] == "RENDERED" and again["attempt_id"] != sent.transmission_id
    row = gw.store.get_transmission(again["attempt_id"])
    assert row.direction == "out" and row.reprocess_of == sent.transmission_id
    assert gw.store.outbound_of(row.id)[0].control_ref == "2"


def test_reprocess_resends_only_what_went_or_failed(world):
    sent = world.out(invoice("INV-4"), ref="m4")

    @dataclass
    class Gw:
        store: Any
        pipeline: Any
        intake: Any

    gw = Gw(world.store, None, world.intake)
    with pytest.raises(ReprocessError, match="still on its way"):
        reprocess(gw, sent.transmission_id, by="ops", reason="again")
    world.sender.mode = "refuse"
    world.deliver()
    assert world.store.get_transmission(sent.transmission_id).status == "FAILED"
    world.sender.mode = "ok"
    done = reprocess(gw, sent.transmission_id, by="ops", reason="certificate renewed")
    assert done.status == "RENDERED" and done.attempt_id != sent.transmission_id
    assert world.deliver() == 1
    assert world.store.get_transmission(done.attempt_id).status == "DELIVERED"
    events = [e["event"] for e in world.store.events(sent.transmission_id)]
    assert "reprocessed" in events
    with pytest.raises(ReprocessError, match="no outbound intake"):
        reprocess(dataclasses.replace(gw, intake=None), done.attempt_id, by="ops", reason="x")


# -- tracker rules ------------------------------------------------------------------------------

def test_delivery_unconfirmed_opens_after_the_time_limit_and_resolves_when_delivered(world):
    first = world.out(invoice("INV-1"), ref="m1")
    world.out(invoice("INV-2"), ref="m2")
    world.deliver()  # both SENT, awaiting a receipt
    assert not world.check(delivery_unconfirmed, minutes=29).opened
    result = world.check(delivery_unconfirmed, minutes=31)
    [alert] = result.opened
    assert alert.kind == "delivery-unconfirmed" and alert.partner_id == "gouden"
    assert alert.key == "delivery-unconfirmed:gouden"
    assert "2 document(s) to gouden not confirmed delivered within 30 min" in alert.summary
    assert "awaiting the partner's receipt" in alert.summary
    assert alert.detail["count"] == 2
    assert {d["business_number"] for d in alert.detail["documents"]} == {"INV-1", "INV-2"}
    row = world.store.outbound_of(first.transmission_id)[0]
    world.store.record_receipt(row.id, ok=True, receipt="CONTRL 1: acknowledged")
    refreshed = world.check(delivery_unconfirmed, minutes=32)
    assert not refreshed.resolved and world.open_alerts("delivery-unconfirmed")[0].detail[
        "count"] == 1
    for r in world.store.outbound_of(world.store.outbound_by_ref("erp", "m2").id):
        world.store.record_receipt(r.id, ok=True, receipt="MDN processed")
    assert [a.kind for a in world.check(delivery_unconfirmed, minutes=33).resolved] == [
        "delivery-unconfirmed"]


def test_delivery_retrying_counts_as_unconfirmed_with_its_last_error(world):
    world.sender.mode = "down"
    world.dispatcher.max_attempts = 5
    world.out(invoice("INV-5"), ref="m5")
    world.deliver()
    [alert] = world.check(delivery_unconfirmed, minutes=45).opened
    assert "1 not delivered yet (last error: ConnectionError: sftp.gouden.example" in \
        alert.summary


def test_outbound_failures_are_grouped_by_partner_stage_and_cause(world, when):
    for n in range(1, 4):
        world.out(invoice(f"BAD-{n}"), ref=f"bad{n}")  # refused at render, same cause
    world.sender.mode = "down"
    down = world.out(invoice("INV-9"), ref="m9")
    world.deliver()
    world.deliver()  # the second attempt gives up (max_attempts 2)
    assert world.store.get_transmission(down.transmission_id).status == "FAILED"
    result = world.check(outbound_failed)
    by_stage = {a.detail["stage"]: a for a in result.opened}
    assert set(by_stage) == {"render", "deliver"}
    render = by_stage["render"]
    assert render.detail["count"] == 3 and render.partner_id == "gouden"
    assert render.summary.startswith("3 documents (latest: the ERP's message bad3) to "
                                     "gouden failed at render: plain-invoice: cannot render "
                                     "BAD-3")
    deliver = by_stage["deliver"]
    assert deliver.summary.startswith("invoice INV-9 to gouden failed at deliver:")
    assert "connection refused" in deliver.summary
    # Sent again and delivered: that failure is gone.
    world.sender.mode = "ok"
    world.intake.resend(down.transmission_id, by="ops", reason="server back")
    world.deliver()
    resolved = world.check(outbound_failed).resolved
    assert [a.key for a in resolved] == [deliver.key]
    # An operator resolves the render group: it opens again only for a new failure.
    AlertBook(world.store).resolve(render.id, "ops", "mapping fixed, ERP resends")
    assert not world.check(outbound_failed).opened
    when.advance(minutes=1)
    world.out(invoice("BAD-77"), ref="bad77")
    [again] = world.check(outbound_failed).opened
    assert again.key == render.key and again.detail["count"] == 1


def test_refused_for_an_unknown_partner_names_nobody(world):
    world.intake.accept(invoice("INV-1"), origin="erp", ref="x", partner="nobody")
    [alert] = world.check(outbound_failed).opened
    assert alert.partner_id is None and "to an unknown partner failed at partner" in \
        alert.summary


def test_order_response_missing_for_an_automatic_partner(world, when):
    world.send(order("1041", "PO-1"))
    world.send(order("1042", "PO-2"))
    world.publish()
    world.erp("PO-1", "ACCEPTED")
    world.erp("PO-2", "REJECTED", "closed account")
    assert not world.check(order_response_missing, minutes=59).opened
    [alert] = world.check(order_response_missing, minutes=61).opened
    assert alert.key == "order-response-missing:gouden" and alert.detail["count"] == 2
    assert "2 order(s) from gouden answered by the ERP without an order response sent " \
           "within 60 min (oldest PO-1, accepted" in alert.summary
    world.out(order_response("PO-1"), ref="r1")
    world.out(order_response("PO-2", "rejected"), ref="r2")
    assert world.check(order_response_missing, minutes=62).refreshed  # rendered, not sent
    world.deliver()
    assert world.check(order_response_missing, minutes=63).resolved


def test_order_response_rule_ignores_partners_without_automatic_responses(world):
    world.partners = PartnerDirectory([p.model_copy(
        update={"outbound": p.outbound.model_copy(update={"order_responses": "off"})})
        for p in world.partners])
    world.send(order("1041", "PO-1"))
    world.publish()
    world.erp("PO-1", "ACCEPTED")
    assert not world.check(order_response_missing, minutes=600).opened


def test_inbound_rules_ignore_outbound_transmissions(world, when):
    # Refused at intake, delivery given up: no "failure" alert (outbound-failed tells).
    world.out(invoice("BAD-1"), ref="b1")
    world.sender.mode = "refuse"
    world.out(invoice("INV-1"), ref="m1")
    world.deliver()
    # The same invoice number sent twice with other content: no "duplicate".
    world.sender.mode = "ok"
    world.out(invoice("INV-2"), ref="m2")
    world.out(invoice("INV-2", notes=["corrected"]), ref="m3")
    world.deliver()
    assert not world.check(failures, duplicates).opened
    # An outbound transmission left RECEIVED by a crash does not stall processing.
    world.store.record_outbound_received(channel="erp", channel_ref="crash", filename=None,
                                         size=2, sha256=world.archive.put(b"{}"),
                                         partner_id="gouden", detail="2 bytes from erp")
    when.advance(minutes=30)
    ctx = TrackerContext(store=world.store, settings=world.tracker, partners=world.partners,
                         now=clock.now())
    assert processing_stalled(ctx) == []
    assert tracking.first_received_at(world.store) is None  # nothing received from partners
    start, end = START - dt.timedelta(days=1), START + dt.timedelta(days=1)
    assert tracking.count_documents(world.store, "gouden", start, end) == 0
    assert tracking.last_received(world.store, "gouden", "invoice") is None
    assert tracking.last_contacts(world.store, "gouden") == []
    # The console's volumes and last contacts count what partners sent only.
    from gateway.store.read import activity, stats

    assert stats.volume(world.store, None, None) == []
    assert activity.last_contact(world.store) == {}
    # Inbound failures still alert.
    world.send(order("1041", "PO-1", bad=True))
    assert [a.kind for a in world.check(failures).opened] == ["failure"]
