"""The AS2, e-mail and SMS senders against fakes of the other side.

AS2: the partner is pyas2lib itself, inside an httpx transport: it parses what the sender
posts with the partner's key and answers the MDN a test wants (positive, negative, another
MIC, unsigned, signed with a stranger's key). SMS: a local ``http.server`` plays Twilio and
Vonage, recording each request. E-mail: the message the sender builds.
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.channels.as2 import compat

compat.prepare()

from pyas2lib import as2  # noqa: E402

from gateway.channels.as2.sender import (  # noqa: E402
    As2Sender,
    As2SendError,
    check_mdn,
    expected_mic,
)
from gateway.channels.as2.settings import As2Identity, As2Settings  # noqa: E402
from gateway.channels.email.sender import EmailSender, content_type_for  # noqa: E402
from gateway.channels.email.settings import SmtpSettings  # noqa: E402
from gateway.channels.outbound import DeliveryRefused  # noqa: E402
from gateway.channels.sms.sender import SmsSender, SmsSendError, sms_text  # noqa: E402
from gateway.channels.sms.settings import SmsSettings  # noqa: E402
from gateway.config import Identifiers, Partner, PartnerAs2, PartnerEmail  # noqa: E402
from gateway.store.records import OutboundRow  # noqa: E402
from tests.as2_keys import loopback_pair, write_pair  # noqa: E402

DATA = b"UNA:+.? 'UNB+UNOC:3+edigw+retail+240101:1200+7'UNH+1+ORDRSP:D:96A:UN'BGM+231+4711'\r\n"


def row(**changes: Any) -> OutboundRow:
    values: dict[str, Any] = dict(
        id="0192f0c0-row-1", transmission_id="t1", partner_id="retail", kind="order-response",
        channel="as2", filename="ordrsp-4711.edi", sha256="0" * 64, size=len(DATA),
        status="pending", attempts=0, last_error=None,
        created_at=dt.datetime.now(dt.UTC), sent_at=None, detail=None)
    values.update(changes)
    return OutboundRow(**values)


# -- AS2 ------------------------------------------------------------------------------------

def keys() -> Path:
    return loopback_pair()


def partner(**as2_values: Any) -> Partner:
    values: dict[str, Any] = dict(as2_id="retail", certificates=[keys() / "client_public.pem"],
                                  validate_certificates=False, url="https://retail.test/as2")
    values.update(as2_values)
    return Partner(id="retail", name="Retail", channels=["as2"], as2=PartnerAs2(**values))


def settings(**values: Any) -> As2Settings:
    return As2Settings(identities=[As2Identity(
        as2_id="edigw", key_file=keys() / "server_private.pem", passphrase="test")], **values)


class As2Peer:
    """The partner as pyas2lib: parses the posted message, answers with ``answer``'s MDN.

    ``answer(message) -> (status, modifier, sign_key)``: the MDN's disposition and the key
    it is signed with (None: unsigned). ``message.mic`` may be changed before building."""

    def __init__(self, answer: Callable[[Any], tuple[str, str | None, bytes | None]]) -> None:
        self.answer = answer
        self.received: list[Any] = []
        self.payloads: list[bytes] = []
        self.headers: list[dict[str, str]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        raw = b"".join(f"{k}: {v}\r\n".encode() for k, v in request.headers.items()
                       if k.lower() not in ("host", "content-length", "accept",
                                            "accept-encoding", "connection", "user-agent"))
        raw += b"\r\n" + request.content
        key = (keys() / "client_private.pem").read_bytes()
        org = as2.Organization(as2_name="retail", decrypt_key=key, decrypt_key_pass="test")
        sender = as2.Partner(as2_name="edigw",
                             verify_cert=(keys() / "server_public.pem").read_bytes(),
                             validate_certs=False)
        message = as2.Message()
        status, (exc, _tb), _ = message.parse(raw, find_org_cb=lambda _x: org,
                                              find_partner_cb=lambda _x: sender)
        assert status == "processed", exc
        self.received.append(message)
        self.payloads.append(message.content)
        self.headers.append(dict(request.headers))
        disposition, modifier, sign_key = self.answer(message)
        message.receiver = as2.Organization(as2_name="retail", sign_key=sign_key,
                                            sign_key_pass="test") if sign_key else org
        mdn = as2.Mdn(mdn_mode=as2.SYNCHRONOUS_MDN)
        mdn.build(message=message, status=disposition, detailed_status=modifier)
        body = mdn.content if isinstance(mdn.content, bytes) else mdn.content.encode()
        headers = {k: " ".join(str(v).split()) for k, v in mdn.headers.items()}
        return httpx.Response(200, headers=headers, content=body)


def as2_sender(peer: As2Peer, **values: Any) -> As2Sender:
    return As2Sender(settings(**values), client=httpx.Client(
        transport=httpx.MockTransport(peer.handler)))


def partner_key() -> bytes:
    return (keys() / "client_private.pem").read_bytes()


def test_positive_signed_mdn_with_our_mic_is_a_delivery():
    """Signed, encrypted: the partner gets our bytes; its signed 'processed' MDN returns the
    MIC we computed, so the payload is DELIVERED with the Message-ID and the MIC in the
    receipt."""
    peer = As2Peer(lambda _m: ("processed", None, partner_key()))
    delivery = as2_sender(peer).send(row(), DATA, partner())
    (message,) = peer.received
    assert peer.payloads == [DATA]
    assert message.signed and message.encrypted and not message.compressed
    assert delivery.delivered
    assert delivery.remote_id == message.message_id
    assert delivery.remote_id.startswith("edigw-0192f0c0-row-1@")
    assert delivery.receipt is not None
    assert delivery.receipt.startswith(f"processed; MIC ok {message.mic.decode()}, sha256")
    assert delivery.receipt.endswith("signed MDN verified")
    headers = peer.headers[0]
    assert headers["as2-from"] == "edigw" and headers["as2-to"] == "retail"
    assert "signed-receipt-micalg=optional, sha256" in headers["disposition-notification-options"]


def test_compressed_and_other_algorithms_reach_the_partner():
    peer = As2Peer(lambda _m: ("processed", None, partner_key()))
    delivery = as2_sender(peer).send(row(), DATA, partner(
        compress=True, digest_algorithm="sha512", encryption_algorithm="tripledes_192_cbc"))
    (message,) = peer.received
    assert message.compressed and message.digest_alg == "sha512"
    assert message.enc_alg == "tripledes_192_cbc"
    assert peer.payloads == [DATA] and delivery.delivered


def test_payload_bytes_arrive_unchanged_lf_line_ends_and_8bit_included():
    """Sent as binary: no canonicalisation of line ends, no re-encoding of 8-bit text."""
    data = "UNA:+.? '\nUNB+UNOC:3+edigw+retail'\nNAD+BY+++Müller'\n".encode("latin-1")
    peer = As2Peer(lambda _m: ("processed", None, partner_key()))
    assert as2_sender(peer).send(row(), data, partner()).delivered
    assert peer.payloads == [data]


def test_mdn_returning_another_mic_is_refused():
    """A positive MDN whose MIC is not the one we computed: the partner got other bytes
    than we signed: refused at once, both MICs told."""
    def other_mic(message: Any) -> tuple[str, str | None, bytes | None]:
        message.mic = base64.b64encode(b"\x00" * 32)
        return "processed", None, partner_key()

    with pytest.raises(DeliveryRefused) as info:
        as2_sender(As2Peer(other_mic)).send(row(), DATA, partner())
    text = str(info.value)
    assert "MIC mismatch: we computed" in text and base64.b64encode(b"\x00" * 32).decode() in text


def test_negative_mdn_is_refused_with_its_disposition():
    peer = As2Peer(lambda _m: ("processed/error", "decryption-failed", partner_key()))
    with pytest.raises(DeliveryRefused) as info:
        as2_sender(peer).send(row(), DATA, partner())
    assert str(info.value).startswith("processed/error: decryption-failed")


def test_unsigned_negative_mdn_is_believed():
    """An unknown-partner MDN is unsigned by design: still the partner's refusal."""
    peer = As2Peer(lambda _m: ("processed/error", "unknown-trading-partner", None))
    with pytest.raises(DeliveryRefused, match="^processed/error: unknown-trading-partner;.*unsigned MDN$"):
        as2_sender(peer).send(row(), DATA, partner())


def test_unsigned_positive_mdn_when_a_signed_one_was_asked_proves_nothing():
    peer = As2Peer(lambda _m: ("processed", None, None))
    with pytest.raises(As2SendError, match="unsigned positive MDN"):
        as2_sender(peer).send(row(), DATA, partner())


def test_unsigned_mdn_accepted_when_none_was_asked_signed():
    peer = As2Peer(lambda _m: ("processed", None, None))
    delivery = as2_sender(peer).send(row(), DATA, partner(mdn_signed=False))
    assert delivery.delivered and delivery.receipt is not None
    assert delivery.receipt.endswith("unsigned MDN")
    assert "disposition-notification-options" not in peer.headers[0]


def test_mdn_signed_by_a_stranger_is_not_trusted(tmp_path):
    """Signed, but not with the partner's key: retried, never taken as delivered."""
    stranger, _cert = write_pair(tmp_path, "stranger", "stranger")
    peer = As2Peer(lambda _m: ("processed", None, stranger.read_bytes()))
    with pytest.raises(As2SendError, match="cannot be trusted"):
        as2_sender(peer).send(row(), DATA, partner())


@pytest.mark.parametrize("status", [500, 503, 404])
def test_http_error_is_retried(status):
    client = httpx.Client(transport=httpx.MockTransport(
        lambda _r: httpx.Response(status, text="busy")))
    with pytest.raises(As2SendError, match=f"answered {status}"):
        As2Sender(settings(), client=client).send(row(), DATA, partner())


def test_refused_connection_is_retried():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = httpx.Client(transport=httpx.MockTransport(refuse))
    with pytest.raises(As2SendError, match="ConnectError"):
        As2Sender(settings(), client=client).send(row(), DATA, partner())


def test_async_mdn_leaves_it_sent_with_our_mic_kept():
    peer = As2Peer(lambda _m: ("processed", None, partner_key()))
    sender = As2Sender(settings(receipt_url="https://edigw.test/as2"), client=httpx.Client(
        transport=httpx.MockTransport(lambda r: (peer.handler(r), httpx.Response(
            200, text="AS2 message received"))[1])))
    delivery = sender.send(row(), DATA, partner(mdn="async"))
    (message,) = peer.received
    assert not delivery.delivered and delivery.remote_id == message.message_id
    assert expected_mic(delivery.receipt) == (message.mic.decode(), "sha256")
    assert peer.headers[0]["receipt-delivery-option"] == "https://edigw.test/as2"


def test_async_mdn_needs_our_receipt_url():
    with pytest.raises(As2SendError, match="receipt_url"):
        As2Sender(settings()).send(row(), DATA, partner(mdn="async"))


def test_same_row_is_sent_again_under_the_same_message_id():
    """A retry is the same message to the partner (its duplicate check applies)."""
    peer = As2Peer(lambda _m: ("processed", None, partner_key()))
    sender = as2_sender(peer)
    first = sender.send(row(), DATA, partner())
    second = sender.send(row(), DATA, partner())
    assert first.remote_id == second.remote_id


def test_check_mdn_judges_disposition_and_mic():
    from gateway.channels.as2.sender import MdnOutcome

    base = MdnOutcome(original_message_id="m1", disposition="processed", ok=False,
                      signed=True, verified=True, mic="abc=", mic_alg="sha256", problem=None)
    assert check_mdn(base, message_id="m1", mic="abc=").ok
    assert not check_mdn(base, message_id="m1", mic="xyz=").ok
    assert not check_mdn(base, message_id="m2", mic="abc=").ok
    dup = MdnOutcome(original_message_id="m1", ok=False, signed=True, verified=True,
                     disposition="processed/warning: duplicate-document", mic=None,
                     mic_alg=None, problem=None)
    assert check_mdn(dup, message_id="m1", mic="abc=").ok
    failed = MdnOutcome(original_message_id="m1", disposition="failed/Failure: unsupported",
                        ok=False, signed=False, verified=False, mic=None, mic_alg=None,
                        problem=None)
    assert check_mdn(failed, message_id="m1", mic=None).negative


# -- e-mail -----------------------------------------------------------------------------------

def test_mail_has_the_document_attached_with_its_type_and_name():
    sender = EmailSender(SmtpSettings(sender="edi@gateway.test"))
    msg = sender.message(row(channel="email"), DATA, ["orders@retail.test"])
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    (attachment,) = list(parsed.iter_attachments())
    assert attachment.get_content_type() == "application/edifact"
    assert attachment.get_filename() == "ordrsp-4711.edi"
    assert attachment.get_payload(decode=True) == DATA
    assert parsed["Message-ID"] == "<edigw-out-0192f0c0-row-1@gateway.test>"
    assert "order response ordrsp-4711.edi" in parsed.get_body(("plain",)).get_content()


def test_mail_goes_to_documents_to_else_the_partner_addresses():
    from gateway.channels.email.sender import recipients_for

    p = Partner(id="retail", name="Retail", identifiers=Identifiers(email=["a@retail.test"]))
    assert recipients_for(p) == ["a@retail.test"]
    p2 = Partner(id="retail", name="Retail", identifiers=Identifiers(email=["a@retail.test"]),
                 email=PartnerEmail(documents_to=["edi@retail.test"]))
    assert recipients_for(p2) == ["edi@retail.test"]


@pytest.mark.parametrize(("name", "ctype"), [("a.edi", "application/EDIFACT"),
                                             ("a.XML", "application/xml"),
                                             ("a.csv", "text/csv"), ("a.pdf", "application/pdf"),
                                             ("a.bin", "application/octet-stream")])
def test_content_type_by_extension(name, ctype):
    assert content_type_for(name) == ctype


# -- SMS --------------------------------------------------------------------------------------

class ProviderServer:
    """A local HTTP server answering as Twilio or Vonage, keeping each request."""

    def __init__(self, status: int = 201, answer: dict[str, Any] | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.requests.append((self.path, dict(self.headers), body))
                reply = json.dumps(outer.answer).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.status, self.answer = status, answer or {}
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def provider() -> Iterator[Callable[..., ProviderServer]]:
    servers: list[ProviderServer] = []

    def make(**kw: Any) -> ProviderServer:
        servers.append(ProviderServer(**kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def phone_partner() -> Partner:
    return Partner(id="retail", name="Retail", identifiers=Identifiers(phone=["0612345678"]))


def test_twilio_request_shape_and_message_sid(provider):
    server = provider(status=201, answer={"sid": "SM0123456789abcdef", "status": "queued"})
    sms = SmsSettings(twilio={"auth_token": "tok3n", "account_sid": "AC123",
                              "from_number": "+33700000000", "api_url": server.url})
    text = b"Order 4711 accepted, delivery 12/03"
    delivery = SmsSender(sms).send(row(channel="sms"), text, phone_partner())
    assert delivery.remote_id == "SM0123456789abcdef" and not delivery.delivered
    ((path, headers, body),) = server.requests
    assert path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"AC123:tok3n").decode()
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert dict(urllib.parse.parse_qsl(body.decode())) == {
        "To": "+33612345678", "From": "+33700000000",
        "Body": "Order 4711 accepted, delivery 12/03"}


def test_vonage_request_shape_and_message_uuid(provider):
    server = provider(status=202, answer={"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"})
    sms = SmsSettings(vonage={"api_key": "key1", "api_secret": "s3cret",
                              "from_number": "+33700000000", "api_url": server.url})
    delivery = SmsSender(sms).send(row(channel="sms"), b"Order 4711 accepted", phone_partner())
    assert delivery.remote_id == "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
    ((path, headers, body),) = server.requests
    assert path == "/v1/messages"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"key1:s3cret").decode()
    assert json.loads(body) == {"message_type": "text", "channel": "sms", "to": "33612345678",
                                "from": "33700000000", "text": "Order 4711 accepted"}


def test_provider_refusing_the_number_fails_at_once_and_outage_is_retried(provider):
    server = provider(status=400, answer={"code": 21211, "message": "Invalid 'To' number"})
    sms = SmsSettings(twilio={"auth_token": "t", "account_sid": "AC1", "from_number": "+3370",
                              "api_url": server.url})
    with pytest.raises(DeliveryRefused, match="21211, Invalid 'To' number"):
        SmsSender(sms).send(row(channel="sms"), b"x", phone_partner())
    server.status = 503
    with pytest.raises(SmsSendError, match="answered 503"):
        SmsSender(sms).send(row(channel="sms"), b"x", phone_partner())


def test_sms_text_is_cut_to_the_limit():
    long = ("Order 4711 accepted, delivery 12/03. " * 10).encode()
    text = sms_text(long, 160)
    assert len(text) <= 160 and text.endswith("…") and text.startswith("Order 4711 accepted")
    assert sms_text(b"  Order 1  \r\n\r\n accepted \r\n", 160) == "Order 1\naccepted"
