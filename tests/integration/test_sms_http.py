"""SMS webhooks over real HTTP (the gateway's Starlette app on uvicorn) into a real pipeline on
SQLite: signed Twilio and Vonage requests built here are received, stored and answered; a
changed byte, a forged or missing signature gets 403, a security event and nothing stored;
unknown numbers are quarantined and answered politely; malformed bodies get 400; a repeated
provider message id gets the same reply and no second transmission."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from gateway.channels.sms.settings import SmsSettings, TwilioSettings, VonageSettings
from gateway.channels.sms.signatures import twilio_signature, vonage_token
from gateway.channels.sms.webhook import TwilioWebhook, VonageWebhook
from gateway.config import DocumentSettings, Identifiers, Partner, PartnerDirectory
from gateway.core.pipeline import Pipeline
from gateway.formats.csv import CsvReader
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.formats.sms.envelope import read_envelope
from gateway.formats.sms.reader import SmsReader
from gateway.http.server import HttpServer, build_app
from gateway.store import schema as s
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.security import SecurityLog
from tests.integration.e2e import Service, Workspace, _toml_str

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "twilio-auth-token-for-tests"
SECRET = "vonage-signature-secret-for-tests"
PUBLIC = "https://edi.example.com"
ORDER = "REF PO-778\n4006381333931 x 12\nABC-12; 3\n"


class Gateway:
    """A pipeline on SQLite behind the HTTP app with both SMS endpoints."""

    def __init__(self, root: Path, mappings: MappingSet) -> None:
        partners = PartnerDirectory([
            Partner(id="shop7", name="Shop 7", channels=["sms"],
                    identifiers=Identifiers(gln=["4012345000009"], phone=["+33612345678"]),
                    documents=[DocumentSettings(type="order", format="sms")]),
            Partner(id="gone", name="Gone", enabled=False, channels=["sms"],
                    identifiers=Identifiers(phone=["+33611111111"]))])
        self.store = Store.from_url(f"sqlite:///{root / 'db.sqlite3'}")
        self.pipeline = Pipeline(store=self.store, archive=Archive(root / "archive"),
                                 partners=partners,
                                 readers=[EdifactReader(mappings), SmsReader(),
                                          CsvReader(mappings)])
        settings = SmsSettings(twilio=TwilioSettings(auth_token=TOKEN),
                               vonage=VonageSettings(signature_secret=SECRET), max_length=500)
        self.security = SecurityLog(self.store)
        common: dict[str, Any] = dict(receiver=self.pipeline, store=self.store,
                                      security=self.security, on_received=self.process)
        self.processed: list[str] = []
        app = build_app(endpoints={"/sms/twilio": TwilioWebhook(settings, partners, **common),
                                   "/sms/vonage": VonageWebhook(settings, partners, **common)},
                        public_url=PUBLIC)
        self.server = HttpServer(app, port=0).start_in_thread()
        self.client = httpx.Client(base_url=self.server.url, timeout=10)

    def process(self, receipts: list) -> None:
        for r in receipts:
            self.pipeline.process(r.transmission_id)
            self.processed.append(r.transmission_id)

    def transmissions(self) -> int:
        return sum(self.store.counts_by_status().values())

    def webhook_rows(self) -> list[Any]:
        with self.store.engine.connect() as conn:
            return conn.execute(s.webhook_messages.select()).all()

    def twilio(self, params: dict[str, str], *, token: str = TOKEN,
               tamper: bytes | None = None, signature: str | None = "sign") -> httpx.Response:
        body = urlencode(params).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if signature == "sign":
            signature = twilio_signature(token, f"{PUBLIC}/sms/twilio", list(params.items()))
        if signature is not None:
            headers["x-twilio-signature"] = signature
        if tamper is not None:
            body = tamper
        return self.client.post("/sms/twilio", content=body, headers=headers)

    def vonage(self, data: dict[str, Any] | bytes, *, secret: str = SECRET,
               tamper: bytes | None = None, iat: float | None = None) -> httpx.Response:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        token = vonage_token(secret, body, iat=iat)
        return self.client.post("/sms/vonage", content=tamper if tamper is not None else body,
                                headers={"content-type": "application/json",
                                         "authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet.load(REPO / "mappings")


@pytest.fixture
def gw(tmp_path: Path, mappings: MappingSet) -> Iterator[Gateway]:
    g = Gateway(tmp_path, mappings)
    yield g
    g.close()


def twilio_sms(body: str = ORDER, sender: str = "+33612345678", sid: str = "SM" + "a" * 32
               ) -> dict[str, str]:
    return {"ToCountry": "FR", "SmsMessageSid": sid, "NumMedia": "0", "MessageSid": sid,
            "AccountSid": "AC" + "0" * 32, "From": sender, "To": "+33700000000", "Body": body,
            "NumSegments": "1", "ApiVersion": "2010-04-01"}


def vonage_sms(text: str = ORDER, sender: str = "33612345678",
               uuid: str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab") -> dict[str, Any]:
    return {"channel": "sms", "message_uuid": uuid, "to": "33700000000", "from": sender,
            "timestamp": "2026-11-27T16:00:00Z", "text": text, "message_type": "text",
            "sms": {"num_messages": "1"}}


def test_a_twilio_signed_order_is_stored_answered_in_twiml_and_queued(gw):
    """200 TwiML listing the items; one transmission PROCESSED for shop7 with the order."""
    r = gw.twilio(twilio_sms())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    assert r.text == ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>Order PO-778 '
                      "received: 12 x 4006381333931; 3 x ABC-12.</Message></Response>")
    assert gw.transmissions() == 1 and len(gw.processed) == 1
    row = gw.store.get_transmission(gw.processed[0])
    assert (row.status, row.partner_id, row.channel, row.format) == (s.PROCESSED, "shop7",
                                                                     "sms", "sms")
    assert row.channel_ref == "twilio:SM" + "a" * 32
    doc = gw.store.documents_of(row.id)[0]
    assert (doc.business_number, doc.status) == ("PO-778", s.PENDING)
    archived = read_envelope(gw.pipeline.archive.get(row.sha256))
    assert (archived.provider, archived.sender, archived.text) == ("twilio", "+33612345678",
                                                                   ORDER)
    [hook] = gw.webhook_rows()
    assert (hook.provider, hook.sender, hook.partner_id, hook.transmission_id) == (
        "twilio", "+33612345678", "shop7", row.id)
    assert gw.security.recent() == []


def test_twilio_one_byte_changed_is_refused_and_nothing_stored(gw):
    """The signed form with 12 changed to 13: 403, a security event, no transmission."""
    params = twilio_sms()
    body = urlencode(params).encode().replace(b"x+12", b"x+13")
    assert body != urlencode(params).encode()
    r = gw.twilio(params, tamper=body)
    assert r.status_code == 403
    assert gw.transmissions() == 0 and gw.webhook_rows() == []
    [event] = gw.security.recent()
    assert (event.channel, event.kind, event.remote) == ("sms:twilio", "bad-signature",
                                                         "127.0.0.1")
    assert TOKEN not in (event.detail or "")


@pytest.mark.parametrize("how", ["wrong token", "no header", "garbage"])
def test_twilio_forged_signatures_are_refused(gw, how):
    """Signed with another token, unsigned, or a made-up header: 403 and nothing stored."""
    if how == "wrong token":
        r = gw.twilio(twilio_sms(), token="not-the-token")
    elif how == "no header":
        r = gw.twilio(twilio_sms(), signature=None)
    else:
        r = gw.twilio(twilio_sms(), signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert r.status_code == 403 and gw.transmissions() == 0
    assert [e.kind for e in gw.security.recent()] == ["bad-signature"]


def test_twilio_national_number_finds_the_partner(gw):
    """0612345678 with default_region FR is +33612345678."""
    r = gw.twilio(twilio_sms(sender="06 12 34 56 78"))
    assert r.status_code == 200 and "received: 12 x 4006381333931" in r.text
    assert gw.webhook_rows()[0].partner_id == "shop7"


@pytest.mark.parametrize("sender", ["+33699999999", "+33611111111"])
def test_unknown_or_disabled_numbers_are_quarantined_and_answered_politely(gw, sender):
    """Stored without partner, QUARANTINED by the pipeline, a polite reply naming the
    reference; not a security event."""
    r = gw.twilio(twilio_sms(sender=sender))
    assert r.status_code == 200
    tid = gw.processed[0]
    assert (f"This number is not registered for ordering with us; your message was kept "
            f"(ref {tid}) and our team will contact you.") in r.text
    row = gw.store.get_transmission(tid)
    assert (row.status, row.stage) == (s.QUARANTINED, "identify")
    assert gw.webhook_rows()[0].partner_id is None
    assert gw.security.recent() == []


def test_a_repeated_twilio_message_gets_the_same_reply_and_one_transmission(gw):
    """Twilio retries: same reply text, no second transmission."""
    first = gw.twilio(twilio_sms())
    second = gw.twilio(twilio_sms())
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.text == second.text
    assert gw.transmissions() == 1 and len(gw.webhook_rows()) == 1


def test_an_order_with_a_line_not_understood_is_answered_precisely_and_not_ordered(gw):
    """The reply names the line; the transmission FAILED, nothing queued."""
    r = gw.twilio(twilio_sms(body="REF 9\nABC-1 x 2\n4006381333932 x 5"))
    assert r.status_code == 200
    assert ("<Message>Not ordered: line 3 '4006381333932 x 5': GTIN check digit should be 1. "
            "Nothing was ordered; please send the whole order again.</Message>") in r.text
    assert gw.store.get_transmission(gw.processed[0]).status == s.FAILED


def test_twilio_reply_is_xml_escaped(gw):
    """A code with < and & stays well-formed TwiML."""
    r = gw.twilio(twilio_sms(body="A<B&C x 2"))
    assert "<Message>Order SMS-" in r.text and "2 x A&lt;B&amp;C." in r.text


@pytest.mark.parametrize("drop,reason", [("Body", "Body missing"), ("From", "From missing")])
def test_malformed_twilio_bodies_get_400(gw, drop, reason):
    """Signed but not an inbound SMS: 400 with the reason, nothing stored."""
    params = twilio_sms()
    del params[drop]
    r = gw.twilio(params)
    assert r.status_code == 400 and reason in r.text
    assert gw.transmissions() == 0 and gw.security.recent() == []


def test_a_text_over_max_length_gets_400(gw):
    """[sms] max_length (500 here) bounds one message."""
    r = gw.twilio(twilio_sms(body="ABC x 1\n" * 100))
    assert r.status_code == 400 and "over the limit of 500" in r.text
    assert gw.transmissions() == 0


# -- Vonage ---------------------------------------------------------------------------------

def test_a_vonage_signed_order_is_stored_and_answered_in_json(gw):
    """200 JSON with the reply; international number without '+' is E.164."""
    r = gw.vonage(vonage_sms())
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "received",
                        "reply": "Order PO-778 received: 12 x 4006381333931; 3 x ABC-12."}
    row = gw.store.get_transmission(gw.processed[0])
    assert (row.status, row.partner_id, row.channel_ref) == (
        s.PROCESSED, "shop7", "vonage:aaaaaaaa-bbbb-cccc-dddd-0123456789ab")


def test_vonage_one_byte_changed_is_refused_and_nothing_stored(gw):
    """payload_hash no longer matches: 403, a security event, no transmission."""
    body = json.dumps(vonage_sms()).encode()
    r = gw.vonage(body, tamper=body.replace(b"x 12", b"x 13"))
    assert r.status_code == 403 and gw.transmissions() == 0 and gw.webhook_rows() == []
    [event] = gw.security.recent()
    assert (event.channel, event.kind) == ("sms:vonage", "bad-signature")
    assert "payload_hash" in event.detail


@pytest.mark.parametrize("how", ["wrong secret", "expired", "no header"])
def test_vonage_forged_or_stale_tokens_are_refused(gw, how):
    """Another secret, a token from the future, or none: 403 and nothing stored."""
    if how == "wrong secret":
        r = gw.vonage(vonage_sms(), secret="not-the-secret")
    elif how == "expired":
        body = json.dumps(vonage_sms()).encode()
        token = vonage_token(SECRET, body, extra={"exp": int(time.time()) - 3600})
        r = gw.client.post("/sms/vonage", content=body,
                           headers={"authorization": f"Bearer {token}"})
    else:
        r = gw.client.post("/sms/vonage", content=json.dumps(vonage_sms()).encode())
    assert r.status_code == 403 and gw.transmissions() == 0
    assert [e.kind for e in gw.security.recent()] == ["bad-signature"]


@pytest.mark.parametrize("body,reason", [
    (b"{not json", "body is not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({**vonage_sms(), "channel": "whatsapp"}).encode(), "not an SMS"),
    (json.dumps({**vonage_sms(), "message_type": "image"}).encode(), "not a text message"),
    (json.dumps({k: v for k, v in vonage_sms().items() if k != "text"}).encode(),
     "text missing"),
])
def test_malformed_vonage_bodies_get_400(gw, body, reason):
    """Signed but not an inbound text SMS: 400 with the reason, nothing stored."""
    r = gw.vonage(body)
    assert r.status_code == 400 and reason in r.text
    assert gw.transmissions() == 0


def test_a_repeated_vonage_message_gets_the_same_reply_and_one_transmission(gw):
    """A retry signed again (new iat) is still the same message id."""
    first = gw.vonage(vonage_sms(), iat=time.time() - 5)
    second = gw.vonage(vonage_sms())
    assert first.json() == second.json()
    assert gw.transmissions() == 1 and len(gw.webhook_rows()) == 1


def test_an_unknown_vonage_number_is_quarantined(gw):
    """Not registered: polite reply, QUARANTINED."""
    r = gw.vonage(vonage_sms(sender="447700900123"))
    assert "not registered for ordering" in r.json()["reply"]
    assert gw.store.get_transmission(gw.processed[0]).status == s.QUARANTINED


def test_an_unconfigured_provider_refuses_everything(tmp_path, mappings):
    """[sms] without [sms.vonage]: the endpoint answers 403 (no secret, nothing verifies)."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    pipeline = Pipeline(store=store, archive=Archive(tmp_path / "a"),
                        partners=PartnerDirectory([]), readers=[SmsReader()])
    hook = VonageWebhook(SmsSettings(), PartnerDirectory([]), receiver=pipeline, store=store,
                         security=SecurityLog(store))
    server = HttpServer(build_app(endpoints={"/sms/vonage": hook}), port=0).start_in_thread()
    try:
        body = json.dumps(vonage_sms()).encode()
        r = httpx.post(f"{server.url}/sms/vonage", content=body,
                       headers={"authorization": f"Bearer {vonage_token('x', body)}"})
        assert r.status_code == 403
        assert "no Vonage signature secret" in SecurityLog(store).recent()[0].detail
        assert sum(store.counts_by_status().values()) == 0
    finally:
        server.stop()
        store.close()


# -- through the real `edigw serve`, to RabbitMQ --------------------------------------------

@pytest.fixture
def served(tmp_path: Path, rabbit_url: str) -> Iterator[tuple[Workspace, Service]]:
    """`edigw serve` with [sms] for both providers and shop7's phone in its profile."""
    with Workspace.create(tmp_path / "gw", f"sqlite:///{tmp_path / 'edigw.sqlite3'}") as ws:
        ws.extra_config = (f"\n[sms]\ndefault_region = \"FR\"\n\n[sms.twilio]\n"
                           f"auth_token = {_toml_str(TOKEN)}\n\n[sms.vonage]\n"
                           f"signature_secret = {_toml_str(SECRET)}\n")
        ws.write_config()
        (ws.partners / "shop7.toml").write_text(
            'id = "shop7"\nname = "Shop 7 (sms e2e)"\nchannels = ["sms"]\n\n'
            '[identifiers]\ngln = ["4012345000009"]\nphone = ["+33612345678"]\n\n'
            '[[documents]]\ntype = "order"\nformat = "sms"\n')
        yield ws, ws.serve()


def test_edigw_serve_twilio_order_reaches_the_queue_and_a_changed_byte_stores_nothing(
        served, mappings):
    """The issue's check: a Twilio-signed SMS order gets TwiML listing the items and is on
    RabbitMQ, in `edigw log` with channel sms; the same request with one byte changed gets 403
    and nothing is stored."""
    from gateway.formats.registry import default_readers as _readers

    assert "sms" in [r.format for r in _readers(mappings)], (
        "gateway.app._readers has no SmsReader: the service cannot read SMS envelopes")
    ws, service = served
    url = f"{service.http_url}/sms/twilio"
    params = twilio_sms()
    body = urlencode(params).encode()
    headers = {"content-type": "application/x-www-form-urlencoded",
               "x-twilio-signature": twilio_signature(TOKEN, url, list(params.items()))}
    changed = body.replace(b"x+12", b"x+13")
    refused = httpx.post(url, content=changed, headers=headers, timeout=10)
    assert refused.status_code == 403 and ws.total() == 0
    r = httpx.post(url, content=body, headers=headers, timeout=10)
    assert r.status_code == 200
    assert "<Message>Order PO-778 received: 12 x 4006381333931; 3 x ABC-12.</Message>" in r.text
    [message] = ws.consume(expected=1, timeout=30)
    assert message.routing_key == "order.shop7"
    order = json.loads(message.body)
    assert (order["order_number"], order["source"]["format"], len(order["lines"])) == (
        "PO-778", "sms", 2)
    log = ws.log_json()
    assert [(t["channel"], t["partner_id"]) for t in log] == [("sms", "shop7")]
    vonage_body = json.dumps(vonage_sms(text="ABC-12 x 1")).encode()
    v = httpx.post(f"{service.http_url}/sms/vonage", content=vonage_body, timeout=10,
                   headers={"authorization": f"Bearer {vonage_token(SECRET, vonage_body)}"})
    assert v.status_code == 200 and v.json()["reply"].endswith("received: 1 x ABC-12.")
    [second] = ws.consume(expected=1, timeout=30)
    assert json.loads(second.body)["lines"][0]["supplier_article"] == "ABC-12"
    assert ws.total() == 2
