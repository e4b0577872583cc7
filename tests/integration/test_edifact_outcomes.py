"""Messages fail alone, interchange references are checked, CONTRLs go back: against the store.

Each test opens a real ``Gateway`` (SQLite, then PostgreSQL) on a temp folder, receives
synthetic EANCOM interchanges through the pipeline and checks what the store says: which
messages became documents, which are kept FAILED or UNSUPPORTED with their reason, the
transmission's status and note, the interchanges recorded, and the CONTRL written to the
partner's outbound folder (read back with pydifact).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import (
    EdifactPolicy,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    UnbIdentifier,
)
from gateway.core.ports import Incoming

pytestmark = pytest.mark.integration

SENDER = "5412345000013"
REPO = Path(__file__).resolve().parents[2]


def _order(ref: str, number: str | None, *, qty: str = "5") -> list[str]:
    bgm = f"BGM+220+{number}+9" if number else "BGM+220"
    return [f"UNH+{ref}+ORDERS:D:96A:UN:EAN008", bgm, "DTM+137:20261127:102",
            "NAD+BY+5412345000013::9", "NAD+SU+5400000000003::9",
            "LIN+1++4000862141404:EN", f"QTY+21:{qty}", "UNS+S"]


def _other(ref: str, kind: str = "DESADV") -> list[str]:
    return [f"UNH+{ref}+{kind}:D:96A:UN:EAN007", "BGM+351+DN-1+9", "DTM+137:20261127:102"]


def interchange(icref: str, messages: list[list[str]], *, ack: bool = False) -> bytes:
    """A UNB..UNZ with the given message bodies; UNT counts are computed."""
    unb = f"UNB+UNOC:3+{SENDER}:14+5400000000003:14+261127:1200+{icref}"
    if ack:
        unb += "++++1"
    segs = ["UNA:+.? '", unb + "'"]
    for body in messages:
        ref = body[0].split("+")[1]
        segs += [s + "'" for s in body]
        segs.append(f"UNT+{len(body) + 1}+{ref}'")
    segs.append(f"UNZ+{len(messages)}+{icref}'")
    return "\n".join(segs).encode("latin-1")


def _gateway(tmp_path: Path, store_url: str, **policy: object) -> Gateway:
    settings = GatewaySettings(
        store={"url": store_url}, archive={"path": tmp_path / "archive", "fsync": False},
        inbox=[{"path": tmp_path / "inbox"}], mappings=REPO / "mappings",
        outbound={"path": tmp_path / "outbound"}, partners=tmp_path / "partners")
    partner = Partner(id="acme", name="ACME", identifiers=Identifiers(
        unb=[UnbIdentifier(id=SENDER, qualifier="14")]), edifact=EdifactPolicy(**policy))
    return Gateway.open(settings, partners=PartnerDirectory([partner]))


@pytest.fixture
def gw(tmp_path, store_url, request):
    policy = getattr(request, "param", {})
    g = _gateway(tmp_path, store_url, **policy)
    yield g
    g.close()


def _ingest(gw: Gateway, data: bytes, name: str = "in.edi"):
    receipt = gw.pipeline.receive(Incoming(data=data, channel="test", filename=name))
    return gw.pipeline.process(receipt.transmission_id)


def test_one_bad_message_of_three_fails_alone(gw):
    """Message 2 has no order number: it is kept FAILED, 1 and 3 are queued."""
    out = _ingest(gw, interchange("IC1", [_order("1", "PO-1"), _order("2", None),
                                          _order("3", "PO-3")]))
    assert out.status == "PROCESSED" and out.queued == 2
    assert out.stage == "validate" and out.reason.startswith("1 of 3 message(s) failed; first: ")
    assert "message 2" in out.reason and "BGM/1004 is missing" in out.reason
    docs = gw.store.documents_of(out.transmission_id)
    assert [(d.message_ref, d.status) for d in docs] == [
        ("1", "PENDING"), ("2", "FAILED"), ("3", "PENDING")]
    assert docs[1].stage == "validate" and "segment 13 (BGM)" in docs[1].reason
    assert gw.store.outbox_size() == 2
    (ic,) = gw.store.interchanges_of(out.transmission_id)
    assert (ic["control_ref"], ic["status"], ic["message_count"]) == ("IC1", "ACCEPTED", 3)


@pytest.mark.parametrize("gw", [{"on_message_error": "reject-interchange"}], indirect=True)
def test_policy_reject_interchange_fails_every_message(gw):
    out = _ingest(gw, interchange("IC2", [_order("1", "PO-1"), _order("2", None)]))
    assert out.status == "FAILED"
    assert "reject-interchange" in out.reason
    docs = gw.store.documents_of(out.transmission_id)
    assert [d.status for d in docs] == ["FAILED", "FAILED"]
    assert gw.store.outbox_size() == 0


def test_unsupported_message_type_is_kept_beside_the_orders(gw):
    out = _ingest(gw, interchange("IC3", [_order("1", "PO-1"), _other("2")]))
    assert out.status == "PROCESSED" and out.queued == 1
    assert out.stage == "unsupported" and "1 of 2 message(s) unsupported" in out.reason
    docs = gw.store.documents_of(out.transmission_id)
    assert [d.status for d in docs] == ["PENDING", "UNSUPPORTED"]
    assert "unsupported message type DESADV D:96A:UN:EAN007" in docs[1].reason
    assert docs[1].business_number == "DN-1"


def test_only_unsupported_messages_fail_the_transmission(gw):
    out = _ingest(gw, interchange("IC4", [_other("1", "DESADV"), _other("2", "DESADV")]))
    assert out.status == "FAILED" and out.stage == "unsupported"
    assert "2 of 2 message(s) unsupported" in out.reason
    assert "unsupported message type DESADV" in out.reason
    row = gw.store.get_transmission(out.transmission_id)
    assert (row.status, row.stage) == ("FAILED", "unsupported")


def test_repeated_interchange_reference_is_processed_with_a_warning_by_default(gw):
    first = _ingest(gw, interchange("IC5", [_order("1", "PO-51")]), "a.edi")
    second = _ingest(gw, interchange("IC5", [_order("1", "PO-52")]), "b.edi")
    assert first.status == second.status == "PROCESSED"
    events = {e["event"]: e["detail"] for e in gw.store.events(second.transmission_id)}
    assert "interchange reference IC5" in events["warnings"]
    assert first.transmission_id in events["warnings"]


@pytest.mark.parametrize("gw", [{"duplicate_interchange": "reject", "contrl": "errors"}],
                         indirect=True)
def test_repeated_interchange_reference_rejected_and_answered_by_contrl(gw, tmp_path):
    from pydifact.segmentcollection import Interchange

    _ingest(gw, interchange("IC6", [_order("1", "PO-61")]), "a.edi")
    out = _ingest(gw, interchange("IC6", [_order("1", "PO-62")]), "b.edi")
    assert out.status == "FAILED" and "already received" in out.reason
    (ic,) = gw.store.interchanges_of(out.transmission_id)
    assert ic["status"] == "REJECTED"
    (sent,) = gw.store.outbound_of(out.transmission_id)
    assert (sent.kind, sent.status) == ("contrl", "DELIVERED")  # the rename done
    files = list((tmp_path / "outbound" / "acme").iterdir())
    assert [f.name for f in files] == [sent.filename]
    contrl = Interchange.from_str(files[0].read_text("latin-1"))
    uci = next(s for s in contrl.segments if s.tag == "UCI")
    assert uci.elements[0] == "IC6" and uci.elements[3] == "4"  # rejected
    events = [e["event"] for e in gw.store.events(out.transmission_id)]
    assert "contrl-delivered" in events  # written to its folder: the rename done


@pytest.mark.parametrize("gw", [{"contrl": "errors"}], indirect=True)
def test_contrl_names_the_rejected_message(gw, tmp_path):
    from pydifact.segmentcollection import Interchange

    out = _ingest(gw, interchange("IC7", [_order("1", "PO-71"), _order("2", None)]))
    (sent,) = gw.store.outbound_of(out.transmission_id)
    contrl = Interchange.from_str((tmp_path / "outbound" / "acme" / sent.filename)
                                  .read_text("latin-1"))
    ucms = [s.elements for s in contrl.segments if s.tag == "UCM"]
    assert [(u[0], u[2]) for u in ucms] == [("1", "7"), ("2", "4")]


def test_no_contrl_unless_requested_by_default(gw, tmp_path):
    out = _ingest(gw, interchange("IC8", [_order("1", None)]))
    assert gw.store.outbound_of(out.transmission_id) == []
    out = _ingest(gw, interchange("IC9", [_order("1", "PO-9")], ack=True))
    (sent,) = gw.store.outbound_of(out.transmission_id)
    assert sent.status == "DELIVERED" and (tmp_path / "outbound" / "acme" / sent.filename).exists()


def test_partly_failed_transmission_reprocessed_sends_nothing_twice(gw):
    out = _ingest(gw, interchange("IC10", [_order("1", "PO-101"), _order("2", None)]))
    assert gw.store.outbox_size() == 1
    again = gw.pipeline.process(out.transmission_id)
    assert again.reason == out.reason
    row = gw.store.get_transmission(out.transmission_id)
    assert (row.status, row.reason) == ("PROCESSED", out.reason)
    docs = gw.store.documents_of(out.transmission_id)
    assert sorted(d.status for d in docs) == ["FAILED", "PENDING"]
    assert gw.store.outbox_size() == 1
    assert len(gw.store.interchanges_of(out.transmission_id)) == 1
