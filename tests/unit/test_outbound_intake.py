"""The outbound spine: a document from the ERP received durably, checked, rendered with a
gap-free control reference, recorded, delivered and followed to its receipt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.intake import OutboundIntake
from gateway.channels.outbound import Delivery, DeliveryRefused, FolderSender, OutboundDispatcher
from gateway.config import Partner, PartnerOutbound
from gateway.formats.render import OutboundMappings, RenderContext, RenderError
from gateway.store.archive import Archive
from gateway.store.db import Store


@dataclass
class _Body:
    text: str
    content_type: str = "text/plain"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return f"REF {control_ref}\n{self.text}".encode()


@dataclass
class _Mapping:
    """A renderer for the test: writes the invoice number, refuses a number ``BAD``."""

    id: str = "plain-invoice"
    document: str = "invoice"
    syntax: str = "edifact"
    aliases: tuple[str, ...] = ("plain",)
    uses_control_ref: bool = True
    file: str = "plain.yaml"
    suffix: str = ".txt"
    seen: list[RenderContext] | None = None

    def render(self, document: dict[str, Any], ctx: RenderContext) -> _Body:
        if self.seen is not None:
            self.seen.append(ctx)
        if document["invoice_number"] == "BAD":
            raise RenderError("cannot render BAD", mapping=self.id, path="invoice_number")
        return _Body(f"INVOICE {document['invoice_number']} for {ctx.recipient_id}")


def _invoice(number: str = "INV-1", **extra: Any) -> bytes:
    doc = {"schema": "edigw.invoice/1", "invoice_number": number, "currency": "EUR",
           "lines": [{"quantity": "2", "line_net_amount": "10.00"}],
           "totals": {"tax_exclusive": "10.00", "tax_inclusive": "12.00"}, **extra}
    return json.dumps(doc).encode()


@pytest.fixture
def world(tmp_path: Path) -> Any:
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.db'}")
    archive = Archive(tmp_path / "archive")
    seen: list[RenderContext] = []
    mappings = OutboundMappings({"plain-invoice": _Mapping(seen=seen)})
    partners = {
        "acme": Partner(id="acme", name="Acme", outbound=PartnerOutbound(
            formats={"invoice": "plain"}, recipient_id="5400000000003", test=True,
            folder=tmp_path / "out" / "acme")),
        "off": Partner(id="off", name="Off", enabled=False,
                       outbound=PartnerOutbound(formats={"invoice": "plain"})),
        "noformat": Partner(id="noformat", name="No format"),
    }
    intake = OutboundIntake(store=store, archive=archive, partners=partners.get,
                            mappings=mappings, sender_id="5412345000013")
    dispatcher = OutboundDispatcher(store, archive, senders={"folder": FolderSender(tmp_path)},
                                    partner=partners.get, max_attempts=3, retry_initial=0.01,
                                    retry_max=0.02)

    class World:
        pass

    w = World()
    w.store, w.archive, w.intake, w.dispatcher, w.seen, w.tmp = (  # type: ignore[attr-defined]
        store, archive, intake, dispatcher, seen, tmp_path)
    yield w
    store.close()


def test_rendered_with_gap_free_control_references(world: Any) -> None:
    first = world.intake.accept(_invoice("INV-1"), origin="erp", ref="m1", partner="acme")
    bad = world.intake.accept(_invoice("BAD"), origin="erp", ref="m2", partner="acme")
    second = world.intake.accept(_invoice("INV-2"), origin="erp", ref="m3", partner="acme")
    assert first.status == "RENDERED" and second.status == "RENDERED"
    assert first.outbound.control_ref == "1"
    assert second.outbound.control_ref == "2"  # the failed one took none
    assert bad.failed and bad.stage == "render" and "cannot render BAD" in bad.reason
    row = world.store.get_transmission(bad.transmission_id)
    assert row.direction == "out" and row.status == "FAILED" and row.stage == "render"
    # The payload as the ERP sent it is archived, the rendering too.
    assert json.loads(world.archive.get(row.sha256))["invoice_number"] == "BAD"
    out = world.store.outbound_of(first.transmission_id)[0]
    assert world.archive.get(out.sha256).startswith(b"REF 1\nINVOICE INV-1 for 5400000000003")
    assert world.seen[0].test is True and world.seen[0].sender_id == "5412345000013"
    assert world.store.last_control_ref("acme") == 2


def test_the_same_erp_message_is_not_sent_twice(world: Any) -> None:
    one = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    two = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    assert two.repeat and two.transmission_id == one.transmission_id
    assert len(world.store.pending_outbound()) == 1


@pytest.mark.parametrize("data, partner, stage, words", [
    (b"{not json", "acme", "parse", "not JSON"),
    (b"[1]", "acme", "parse", "not a JSON object"),
    (json.dumps({"schema": "edigw.order/1"}).encode(), "acme", "validate", "'schema' must be"),
    (_invoice(), "nobody", "partner", "unknown partner 'nobody'"),
    (_invoice(), "off", "partner", "disabled"),
    (_invoice(), None, "partner", "no partner"),
    (b"[1, 2]", "acme", "parse", "a list of 2 documents"),
    (_invoice(), "noformat", "mapping", "names no format for invoice"),
    (json.dumps({"schema": "edigw.invoice/1", "lines": [{}]}).encode(), "acme", "validate",
     "invoice_number"),
])
def test_refused_documents_fail_with_their_reason(world: Any, data: bytes, partner: str | None,
                                                  stage: str, words: str) -> None:
    result = world.intake.accept(data, origin="erp", ref="x", partner=partner)
    assert result.failed and result.stage == stage and words in result.reason
    row = world.store.get_transmission(result.transmission_id)
    assert (row.status, row.stage, row.direction) == ("FAILED", stage, "out")
    assert world.archive.get(row.sha256) == data  # kept, can be looked at and resent
    assert world.store.pending_outbound() == []  # nothing to send


def test_unknown_format_names_the_known_ones(world: Any) -> None:
    result = world.intake.accept(_invoice(), origin="cli", partner="acme", fmt="ubl")
    assert result.stage == "mapping" and "plain-invoice" in result.reason


def test_dry_run_records_nothing(world: Any) -> None:
    result = world.intake.dry_run(_invoice(), partner="acme")
    assert result.rendered.startswith(b"REF 1\nINVOICE INV-1")
    assert world.store.last_control_ref("acme") == 0
    assert world.store.pending_outbound() == []


def test_delivered_to_the_folder_and_followed(world: Any) -> None:
    result = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    assert world.dispatcher.deliver_pending() == 1
    row = world.store.get_transmission(result.transmission_id)
    assert row.status == "DELIVERED"
    files = list((world.tmp / "out" / "acme").iterdir())
    assert [f.read_bytes()[:5] for f in files] == [b"REF 1"]
    events = [e["event"] for e in world.store.events(result.transmission_id)]
    assert events[:2] == ["received", "rendered"] and "invoice-delivered" in events


class _Flaky:
    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes

    def send(self, row: Any, data: bytes, partner: Any) -> str | Delivery:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_retries_back_off_then_fail(world: Any) -> None:
    import time

    result = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    sender = _Flaky([OSError("connection refused")] * 3)
    world.dispatcher.senders["folder"] = sender
    world.dispatcher.deliver_pending()
    assert world.dispatcher.deliver_pending() == 0  # backing off: not tried at once
    assert len(sender.outcomes) == 2
    for _ in range(2):
        time.sleep(0.05)
        world.dispatcher.deliver_pending()
    row = world.store.get_transmission(result.transmission_id)
    assert (row.status, row.stage) == ("FAILED", "deliver")
    assert "connection refused" in row.reason
    events = [e["event"] for e in world.store.events(result.transmission_id)]
    assert events.count("delivery-retry") == 2


def test_async_receipt_and_refusal(world: Any) -> None:
    a = world.intake.accept(_invoice("A"), origin="erp", ref="a", partner="acme")
    b = world.intake.accept(_invoice("B"), origin="erp", ref="b", partner="acme")
    world.dispatcher.senders["folder"] = _Flaky([
        Delivery("posted", delivered=False, remote_id="<msg-a@edigw>"),
        DeliveryRefused("processed/error: decryption-failed")])
    world.dispatcher.deliver_pending()
    assert world.store.get_transmission(a.transmission_id).status == "SENT"
    rb = world.store.get_transmission(b.transmission_id)
    assert rb.status == "FAILED" and "decryption-failed" in rb.reason
    row = world.store.outbound_by_remote_id("<msg-a@edigw>")
    world.store.record_receipt(row.id, ok=True, receipt="MDN processed, MIC ok")
    assert world.store.get_transmission(a.transmission_id).status == "DELIVERED"
    assert world.store.outbound_by_control_ref("acme", "1").id == row.id


def test_resend_takes_a_new_control_reference(world: Any) -> None:
    first = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    again = world.intake.resend(first.transmission_id, by="ops", reason="partner lost it")
    assert again.status == "RENDERED" and again.transmission_id != first.transmission_id
    assert again.outbound.control_ref == "2"
    assert world.store.get_transmission(again.transmission_id).reprocess_of == \
        first.transmission_id


def test_interrupted_rendering_resumes(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    tid = world.store.record_outbound_received(
        channel="erp", channel_ref="m9", filename=None, size=10,
        sha256=world.archive.put(_invoice("INV-9")), partner_id="acme", detail="test")
    world.intake._clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert world.intake.resume() == 1
    assert world.store.get_transmission(tid).status == "RENDERED"


def test_a_batch_is_received_and_recorded_together(world: Any) -> None:
    from gateway.channels.intake import Incoming

    results = world.intake.accept_many([
        Incoming(_invoice("B-1"), origin="erp", ref="b1", partner="acme"),
        Incoming(_invoice("BAD"), origin="erp", ref="b2", partner="acme"),
        Incoming(_invoice("B-1"), origin="erp", ref="b1", partner="acme"),  # redelivered
        Incoming(_invoice("B-3"), origin="erp", ref="b3", partner="nobody"),
        Incoming(_invoice("B-4"), origin="erp", ref="b4", partner="acme"),
    ])
    assert [r.status for r in results] == ["RENDERED", "FAILED", "RENDERED", "FAILED",
                                           "RENDERED"]
    assert results[2].repeat and results[2].transmission_id == results[0].transmission_id
    assert [r.outbound.control_ref for r in (results[0], results[4])] == ["1", "2"]
    assert results[3].stage == "partner"
    assert len(world.store.pending_outbound()) == 2


def test_check_config_names_what_cannot_be_sent() -> None:
    from gateway.channels.intake import outbound_problems

    mappings = OutboundMappings.load(Path(__file__).resolve().parents[2] / "mappings")
    partners = [
        Partner(id="ok", name="ok", outbound=PartnerOutbound(formats={"invoice": "ubl"})),
        Partner(id="typo", name="typo", outbound=PartnerOutbound(
            formats={"invoice": "eancom-invoic-d99z"})),
        Partner(id="edi", name="edi", outbound=PartnerOutbound(
            formats={"invoice": "eancom-invoic-d96a"})),
        Partner(id="mail", name="mail", outbound=PartnerOutbound(
            channel="email", formats={"invoice": "factur-x"})),
        Partner(id="lists", name="lists", outbound=PartnerOutbound(price_lists=["general"])),
    ]
    problems = outbound_problems(partners, mappings, sender_id=None, senders=["folder"])
    text = "\n".join(problems)
    assert not any(p.startswith("ok:") for p in problems)
    assert "typo: [outbound] formats: no outbound mapping renders invoice as " \
           "'eancom-invoic-d99z'" in text
    assert "edi: [outbound] formats: eancom-invoic-d96a needs our UNB identity" in text
    assert "mail: [outbound] channel 'email': this gateway has no sender" in text
    assert "lists: [outbound] price_lists needs formats.price-list" in text
    assert outbound_problems(partners[:1] + partners[2:3], mappings, sender_id="5412345000013",
                             senders=["folder"]) == []


def test_two_instances_taking_the_same_message_record_it_once(world: Any,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    first = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    # The second instance looked before the first had committed: it saw nothing.
    real = world.store.outbound_by_ref
    calls = iter([None])
    monkeypatch.setattr(world.store, "outbound_by_ref",
                        lambda origin, ref: next(calls, None) or real(origin, ref))
    second = world.intake.accept(_invoice(), origin="erp", ref="m1", partner="acme")
    assert second.repeat and second.transmission_id == first.transmission_id
    assert len(world.store.pending_outbound()) == 1
    assert world.store.last_control_ref("acme") == 1


def test_the_address_wins_over_the_documents_own_partner(world: Any) -> None:
    doc = json.loads(_invoice())
    doc.update(partner="sample", message_id="from-elsewhere",
               source={"format": "edifact", "standard": "EANCOM", "version": "D96A",
                       "mapping": "eancom-invoic-d96a"})
    result = world.intake.accept(json.dumps([doc]).encode(), origin="cli", partner="acme")
    assert result.status == "RENDERED" and result.partner_id == "acme"
    stored = world.store.document_payload(result.outbound.document_id)
    assert stored["partner"] == "acme" and stored["source"]["format"] == "erp"
    assert stored["message_id"] != "from-elsewhere"


def test_a_large_payload_is_copied_from_the_archive_not_held(world: Any,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    result = world.intake.accept(_invoice("BIG-1"), origin="erp", ref="big", partner="acme")
    monkeypatch.setattr(world.dispatcher, "LARGE", 10)  # every payload counts as large
    monkeypatch.setattr(world.archive, "get", lambda sha: pytest.fail("read whole"))
    assert world.dispatcher.deliver_pending() == 1
    files = list((world.tmp / "out" / "acme").iterdir())
    assert [f.read_bytes()[:5] for f in files] == [b"REF 1"]
    assert world.store.get_transmission(result.transmission_id).status == "DELIVERED"


@pytest.mark.parametrize("stream_above", [1 << 20, 100])  # in memory, and streamed
def test_hostile_documents_fail_alone(world: Any, stream_above: int) -> None:
    world.intake.stream_above = stream_above
    deep_items = (b'{"schema":"edigw.price-list/1","price_list_number":"1","items":'
                  + b"[" * 100_000 + b"]" * 100_000 + b"}")
    for data, stage in [(b"[" * 200_000 + b"]" * 200_000, "parse"),
                        (deep_items, "parse"),
                        (_invoice(totals={"payable": "NaN"}), "validate")]:
        result = world.intake.accept(data, origin="erp", partner="acme")
        assert (result.status, result.stage) == ("FAILED", stage), result.reason
    assert world.store.pending_outbound() == []
