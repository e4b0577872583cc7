"""A partner's onboarding state (draft, test, live, suspended) through the real pipeline,
store and profile administration: what each state does to its files, the go-live
checklist, and every refusal of a state change."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.app import Gateway
from gateway.channels.email.replies import MailReplies, PendingReply, ReceivedItem
from gateway.config import GatewaySettings, Partner, load_partners
from gateway.core.errors import ConfigError
from gateway.core.lifecycle import DRAFT_REASON, SUSPENDED_REASON
from gateway.core.ports import Incoming
from gateway.core.status import TransmissionStatus as T
from gateway.store import schema as s
from gateway.store.audit import AuditLog
from gateway.store.onboarding import held_transmissions
from gateway.tracker.onboarding import checklist, release_held
from gateway.web.partners_admin import Invalid, NotFound, NotReady, PartnerAdmin
from tests.as2_keys import self_signed

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()

PROFILE = """\
id = "retail"
name = "Retail SA"
channels = ["folder"]
{state}

[identifiers]
unb = [{{ id = "5401234000012", qualifier = "14" }}]

[[documents]]
type = "order"
format = "edifact"

[edifact]
contrl = "always"
"""


def order(n: int) -> bytes:
    """The sample order under its own interchange reference and order number."""
    return (SAMPLE.replace(b"ICR0042", f"ICR{n:04d}".encode())
            .replace(b"PO-2024-0107", f"PO-{n:06d}".encode()))


class World:
    def __init__(self, tmp: Path, state: str | None, store_url: str | None = None) -> None:
        folder = tmp / "partners"
        folder.mkdir()
        (folder / "retail.toml").write_text(
            PROFILE.format(state=f'state = "{state}"' if state else ""), encoding="utf-8")
        self.folder = folder
        self.settings = GatewaySettings(
            store={"url": store_url or f"sqlite:///{tmp / 'edigw.sqlite3'}"},
            archive={"path": tmp / "archive", "fsync": False},
            inbox=[{"path": tmp / "inbox"}], mappings=ROOT / "mappings",
            outbound={"path": tmp / "outbound"}, partners=folder)
        self.gw = Gateway.open(self.settings, partners=load_partners(folder))
        self.admin = PartnerAdmin(self.settings, audit=AuditLog(self.gw.store),
                                  on_change=self.gw.partners_changed,
                                  secrets_dir=tmp / "secrets", certs_dir=tmp / "certs")
        self.n = 0

    def ingest(self, data: bytes | None = None) -> Any:
        self.n += 1
        receipt = self.gw.pipeline.receive(Incoming(data=data or order(self.n),
                                                    channel="folder",
                                                    filename=f"order-{self.n}.edi"))
        return self.gw.pipeline.process(receipt.transmission_id)

    def outbox_keys(self) -> list[str]:
        with self.gw.store.engine.connect() as conn:
            return [r.routing_key for r in conn.execute(s.outbox.select())]

    def contrls(self, tid: str) -> list[Any]:
        return [o for o in self.gw.store.outbound_of(tid) if o.kind == "contrl"]

    def release(self, by: str = "admin") -> Any:
        return lambda pid: len(release_held(self.gw, pid, by=by, reason="back"))


@pytest.fixture
def world(tmp_path, request):
    w = World(tmp_path, getattr(request, "param", None))
    yield w
    w.gw.close()


def _audit(world: World, action: str) -> list[Any]:
    return [e for e in AuditLog(world.gw.store).list(target="partner:retail")
            if e.action == action]


# -- the profile -----------------------------------------------------------------------------

def test_a_profile_without_state_is_live_and_a_bad_state_names_file_key_and_value(tmp_path):
    """Existing profiles are live; ``state = "beta"`` stops loading with the key named."""
    assert Partner(id="p", name="P").state == "live"
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "retail.toml").write_text(PROFILE.format(state='state = "beta"'))
    with pytest.raises(ConfigError) as caught:
        load_partners(folder, strict=True)
    assert caught.value.key == "state" and caught.value.value == "beta"
    assert "retail.toml" in str(caught.value.file)


def test_state_test_sets_the_outbound_test_indicator():
    """A partner in test receives what we send with UNB 0035 = 1, as [outbound] test did."""
    assert Partner(id="p", name="P", state="test").test_indicator
    assert Partner(id="p", name="P", outbound={"test": True}).test_indicator
    assert not Partner(id="p", name="P").test_indicator


# -- what each state does to a file ---------------------------------------------------------

@pytest.mark.parametrize("world", ["draft"], indirect=True)
def test_a_draft_partners_file_is_archived_and_quarantined_not_processed(world):
    """Received and archived, QUARANTINED at stage partner with the issue's reason; no
    document, nothing queued, no CONTRL."""
    out = world.ingest()
    row = world.gw.store.get_transmission(out.transmission_id)
    assert (row.status, row.stage, row.reason) == (T.QUARANTINED, "partner", DRAFT_REASON)
    assert row.partner_id == "retail"
    assert world.gw.archive.get(row.sha256) == order(1)
    assert world.gw.store.documents_of(out.transmission_id) == []
    assert world.outbox_keys() == [] and world.contrls(out.transmission_id) == []


@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_a_test_partners_order_is_routed_to_the_test_queue_never_to_production(world):
    """Processed and mapped as usual, queued as test.order.retail, marked on its timeline."""
    out = world.ingest()
    assert out.status == T.PROCESSED and out.queued == 1, out.reason
    assert world.outbox_keys() == ["test.order.retail"]
    events = [e["event"] for e in world.gw.store.events(out.transmission_id)]
    assert "test" in events


def test_a_live_partners_order_goes_to_production(world):
    out = world.ingest()
    assert out.queued == 1
    assert world.outbox_keys() == ["order.retail"]
    assert "test" not in [e["event"] for e in world.gw.store.events(out.transmission_id)]


@pytest.mark.parametrize("world", ["suspended"], indirect=True)
def test_a_suspended_partners_file_is_held_then_released_when_live(world):
    """Held: quarantined before mapping, nothing queued, no CONTRL. Set back to live with a
    reason, the held file is processed (a new attempt), its order queued for production,
    and its CONTRL made; nothing is held any more and a second release finds nothing."""
    out = world.ingest()
    row = world.gw.store.get_transmission(out.transmission_id)
    assert (row.status, row.stage, row.reason) == (T.QUARANTINED, "partner", SUSPENDED_REASON)
    assert world.outbox_keys() == [] and world.contrls(out.transmission_id) == []
    assert held_transmissions(world.gw.store, "retail") == [out.transmission_id]

    shown = world.admin.set_state("admin", "retail", "live", reason="contract renewed",
                                  release=world.release())
    assert (shown["state"], shown["released"]) == ("live", 1)
    assert world.outbox_keys() == ["order.retail"]
    assert held_transmissions(world.gw.store, "retail") == []
    with world.gw.store.engine.connect() as conn:
        (attempt,) = conn.execute(s.transmissions.select().where(
            s.transmissions.c.reprocess_of == out.transmission_id)).all()
    assert attempt.status == T.PROCESSED and world.contrls(attempt.id)
    assert release_held(world.gw, "retail", by="x", reason="again") == []
    assert [e.after["transmissions"] for e in _audit(world, "partner.release")] == [1]


def test_deliveries_to_a_suspended_partner_wait_until_it_is_live(world, tmp_path):
    """A CONTRL made while live but not yet delivered stays PENDING while the partner is
    suspended (the dispatcher skips it, and its later runs leave it out of the query), and
    goes once the partner is live again."""
    dispatcher = world.gw.outbound
    world.gw.outbound = None  # nothing delivered right after processing
    out = world.ingest()
    (contrl,) = world.contrls(out.transmission_id)
    assert contrl.status == "PENDING"
    world.admin.set_state("admin", "retail", "suspended", reason="unpaid invoices")
    assert dispatcher.deliver_pending() == 0
    assert dispatcher.deliver_pending() == 0  # from the query's side this time
    assert world.gw.store.get_outbound(contrl.id).status == "PENDING"
    assert not (tmp_path / "outbound" / "retail").exists()
    world.admin.set_state("admin", "retail", "live", reason="paid")
    assert dispatcher.deliver_pending() == 1
    assert world.gw.store.get_outbound(contrl.id).status == "DELIVERED"
    assert list((tmp_path / "outbound" / "retail").iterdir())


def test_no_mail_reply_is_prepared_for_a_draft_or_suspended_partner():
    """A suspended partner gets no acknowledgement mail (its files are held)."""
    replies = MailReplies(mailer=None, outcomes=None)  # type: ignore[arg-type]
    for state, expected in (("suspended", 0), ("draft", 0), ("live", 1)):
        replies.pending.clear()
        partner = Partner(id="p", name="P", state=state, email={"acknowledgements": True})
        replies.expect(PendingReply(key="k", partner=partner, to=["a@p.example"],
                                    subject="orders", message_id="<m@p>",
                                    items=[ReceivedItem("t1", "order.edi", 10)]))
        assert len(replies.pending) == expected, state


# -- the checklist and promotion -------------------------------------------------------------

@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_promotion_is_refused_with_what_is_missing_until_the_checklist_is_done(world):
    """Before any test file: no order received in test and no CONTRL returned, so going
    live is refused with both items and the file is untouched; after one good test file
    (its CONTRL delivered) every item is done and the promotion goes through, audited."""
    items = {i.name: i for i in world.admin.checklist("retail")}
    assert not items["order received in test"].ok
    assert not items["CONTRL returned"].ok
    before = (world.folder / "retail.toml").read_bytes()
    with pytest.raises(NotReady) as caught:
        world.admin.set_state("admin", "retail", "live", reason="looks fine")
    assert {i.name for i in caught.value.missing} == {"order received in test",
                                                      "CONTRL returned"}
    assert (world.folder / "retail.toml").read_bytes() == before
    assert _audit(world, "partner.state") == []

    out = world.ingest()
    assert out.queued == 1
    assert all(i.ok for i in world.admin.checklist("retail")), world.admin.checklist("retail")
    shown = world.admin.set_state("alice", "retail", "live", reason="recette signed",
                                  remote="192.0.2.1")
    assert shown["state"] == "live" and world.gw.partners.get("retail").state == "live"
    assert "state" not in tomllib.loads((world.folder / "retail.toml").read_text())
    (entry,) = _audit(world, "partner.state")
    assert (entry.actor, entry.remote) == ("alice", "192.0.2.1")
    assert entry.before == {"state": "test"}
    assert entry.after == {"state": "live", "reason": "recette signed"}
    assert world.ingest().queued == 1
    assert world.outbox_keys()[-1] == "order.retail"


@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_a_failed_test_file_does_not_tick_its_document_type(world):
    """A test order that fails to map counts as failed, not as received in test."""
    broken = order(99).replace(b"BGM+220+PO-000099+9'", b"BGM+220++9'")
    out = world.ingest(broken)
    assert out.status == T.FAILED, out
    item = next(i for i in world.admin.checklist("retail")
                if i.name == "order received in test")
    assert not item.ok and "1 failed" in item.detail


@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_forced_promotion_is_audited_with_its_reason_and_what_was_missing(world):
    out = world.admin.set_state("admin", "retail", "live", reason="urgent go-live",
                                force=True)
    assert out["state"] == "live"
    (entry,) = _audit(world, "partner.state")
    assert entry.after["forced"] is True and entry.after["reason"] == "urgent go-live"
    assert {m["name"] for m in entry.after["missing"]} == {"order received in test",
                                                           "CONTRL returned"}


def test_state_changes_are_refused_without_reason_unknown_state_or_partner(world):
    for state, reason, error, field in (("beta", "why", Invalid, "state"),
                                        ("test", "", Invalid, "reason"),
                                        ("test", "   ", Invalid, "reason")):
        with pytest.raises(error) as caught:
            world.admin.set_state("admin", "retail", state, reason=reason)
        assert caught.value.field == field
    with pytest.raises(NotFound):
        world.admin.set_state("admin", "nobody", "test", reason="why")
    assert world.gw.partners.get("retail").state == "live"
    assert _audit(world, "partner.state") == []


def test_suspended_back_to_live_needs_no_checklist(world):
    """A partner that was live and suspended resumes without the go-live checklist."""
    world.admin.set_state("admin", "retail", "suspended", reason="audit")
    assert world.admin.set_state("admin", "retail", "live", reason="ok")["state"] == "live"
    assert [e.after["state"] for e in _audit(world, "partner.state")] == ["live", "suspended"]


def test_certificates_must_be_valid_to_go_live(tmp_path, world):
    """An AS2 partner's expired certificate is a missing item; a valid one is done."""
    now = dt.datetime.now(dt.UTC)
    _, old = self_signed("old", not_before=now - dt.timedelta(days=30),
                         not_after=now - dt.timedelta(days=1))
    _, good = self_signed("good")
    paths = []
    for name, cert in (("old.pem", old), ("good.pem", good)):
        (tmp_path / name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths.append(tmp_path / name)
    partner = world.gw.partners.get("retail")
    for certs, ok in (([paths[1]], True), (paths, False), ([tmp_path / "none.pem"], False)):
        as2 = {"as2_id": "RETAIL", "certificates": certs}
        item = next(i for i in checklist(world.gw.store,
                                         partner.model_copy(update={"as2": _as2(as2)}))
                    if i.name == "certificates valid")
        assert item.ok is ok, item
        if not ok:
            assert "expired" in item.detail or "cannot be read" in item.detail


def _as2(values: dict[str, Any]) -> Any:
    from gateway.config import PartnerAs2

    return PartnerAs2.model_validate(values)


def test_a_profile_declaring_no_document_is_not_ready(world):
    partner = world.gw.partners.get("retail").model_copy(update={"documents": []})
    (item,) = [i for i in checklist(world.gw.store, partner) if not i.ok]
    assert item.name == "documents declared"


@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_a_streamed_file_of_a_test_partner_goes_to_the_test_queue_too(world, monkeypatch):
    """A file read as a stream (held documents released at its end) keeps the test key."""
    from gateway.store.held import HeldRepository

    released = []
    release = HeldRepository.release_held

    def spy(self: Any, tid: str, **kw: Any) -> Any:
        released.append(kw)
        return release(self, tid, **kw)

    monkeypatch.setattr(HeldRepository, "release_held", spy)
    world.gw.pipeline.stream_above = 64
    out = world.ingest()
    assert released == [{"on_conflict": "hold", "test": True}]
    assert out.queued == 1, out
    assert world.outbox_keys() == ["test.order.retail"]
    assert "test" in [e["event"] for e in world.gw.store.events(out.transmission_id)]


@pytest.mark.parametrize("world", ["suspended"], indirect=True)
def test_a_streamed_file_of_a_suspended_partner_is_held(world):
    world.gw.pipeline.stream_above = 64
    out = world.ingest()
    row = world.gw.store.get_transmission(out.transmission_id)
    assert (row.status, row.reason, row.partner_id) == (T.QUARANTINED, SUSPENDED_REASON,
                                                        "retail")
    assert world.outbox_keys() == []


def test_the_test_queue_is_always_declared_bound_to_test_keys_once():
    """Whatever ``queues`` binds, the test queue is declared with ``test.#``; a settings
    file that lists it with that binding already does not declare it twice."""
    from gateway.bus.settings import BusSettings
    from gateway.bus.topology import test_binding
    from gateway.config import BrokerSettings

    assert BrokerSettings().test_queue == "erp.test"
    assert test_binding(BusSettings()) == [("erp.test", "test.#")]
    assert test_binding(BusSettings(queues={"erp.orders": ["#"]}, test_queue="t")) == [
        ("t", "test.#")]
    assert test_binding(BusSettings(queues={"erp.test": ["test.#"]})) == []


@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_a_conflict_received_in_test_is_released_to_the_test_queue(world):
    """The same order number with other content is held; released by an operator, it goes
    where its partner's documents went when it came: the test queue."""
    from gateway.store.conflicts import ConflictDesk

    world.ingest()
    corrected = order(1).replace(b"ICR0001", b"ICR0101").replace(b"QTY+21:40:BG'",
                                                                 b"QTY+21:41:BG'")
    out = world.ingest(corrected)
    assert out.status == T.HELD, out
    (held,) = world.gw.store.documents_of(out.transmission_id)
    world.admin.set_state("admin", "retail", "live", reason="go", force=True)
    ConflictDesk(world.gw.store).release(held.id, by="otto", reason="the corrected one")
    assert world.outbox_keys() == ["test.order.retail", "test.order.retail"]


@pytest.mark.parametrize("world", ["test"], indirect=True)
def test_what_we_render_for_a_partner_in_test_carries_the_test_indicator(world):
    """The outbound intake's rendering context: test (UNB 0035 = 1) while in test only."""
    partner = world.gw.partners.get("retail")
    assert world.gw.intake._context(partner).test is True
    world.admin.set_state("admin", "retail", "live", reason="go", force=True)
    assert world.gw.intake._context(world.gw.partners.get("retail")).test is False


def test_the_folder_watch_takes_a_state_change_without_restart(world):
    """A profile edited by hand (or by the CLI of another process) to suspended: the live
    directory takes it at the watch's next look, and the next file is held."""
    import os

    from gateway.config import PartnerFolderWatch

    watch = PartnerFolderWatch(world.gw.partners, world.folder)
    path = world.folder / "retail.toml"
    path.write_text(PROFILE.format(state='state = "suspended"'), encoding="utf-8")
    os.utime(path, ns=(1, 1))  # another mtime whatever the clock's resolution
    assert watch.check()
    assert world.gw.pipeline.partners.get("retail").state == "suspended"
    out = world.ingest()
    assert world.gw.store.get_transmission(out.transmission_id).reason == SUSPENDED_REASON


@pytest.mark.parametrize("world", ["suspended"], indirect=True)
def test_held_files_raise_one_alert_per_partner_and_explain_says_held(world):
    """Three held files: one quarantine alert for the partner (not one per file), and
    "where is order N" says the file is held until the partner is live, not that a profile
    must list its sender; released, the alert goes."""
    from gateway.tracker import explain
    from gateway.tracker.alerts import AlertBook
    from gateway.tracker.engine import Tracker

    outs = [world.ingest() for _ in range(3)]
    tracker = Tracker(world.gw.settings.tracker, world.gw.partners, world.gw.store)
    tracker.check()

    open_ = [a for a in AlertBook(world.gw.store).list(status="open") if a.kind == "quarantine"]
    assert [(a.key, a.partner_id) for a in open_] == [("quarantine:suspended:retail", "retail")]
    assert "3 file(s) from retail kept back" in open_[0].summary
    said = explain.explain(world.gw.store, world.gw.partners, world.gw.settings,
                           filename="order-1.edi")
    assert said.verdict == "quarantined" and "is held" in said.summary
    assert "retail is suspended" in said.summary and "lists the sender" not in said.summary
    assert len(outs) == 3
    world.admin.set_state("admin", "retail", "live", reason="back", release=world.release())
    tracker.check()
    assert not [a for a in AlertBook(world.gw.store).list(status="open")
                if a.kind == "quarantine"]
