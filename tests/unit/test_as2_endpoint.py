"""The AS2 receive endpoint with messages pyas2lib builds as the sending partner (keys made at
test time), tampered or misaddressed copies of them, and messages captured from Mendelson and
IBM Sterling (pyas2-lib's fixtures in the shared corpus: those tests are in the corpus tier)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from gateway.channels.as2 import compat

compat.prepare()

from asn1crypto import cms as asn1_cms  # noqa: E402
from pyas2lib import as2  # noqa: E402
from pyas2lib import cms as as2_cms  # noqa: E402

from gateway.channels.as2.endpoint import As2Endpoint  # noqa: E402
from gateway.channels.as2.keys import load_identity  # noqa: E402
from gateway.channels.as2.records import As2Records, mdn_http_parts  # noqa: E402
from gateway.channels.as2.settings import As2Identity, As2Settings  # noqa: E402
from gateway.config import Partner, PartnerAs2, PartnerDirectory  # noqa: E402
from gateway.core.pipeline import Pipeline  # noqa: E402
from gateway.core.ports import WebReply, WebRequest  # noqa: E402
from gateway.store.archive import Archive  # noqa: E402
from gateway.store.db import Store  # noqa: E402
from gateway.store.security import SecurityLog  # noqa: E402
from tests.unit.as2_fixtures import (  # noqa: E402
    capture_request,
    fixture_request,
    loopback_fixtures,
    mendelson_identity,
    mendelson_partner,
    pyas2lib_fixtures,
    sterling_identity,
    sterling_partner,
)


class Gateway:
    """An endpoint over a real pipeline (SQLite store, archive) in a temporary folder."""

    def __init__(self, tmp_path, partners: list[Partner], identities: list[As2Identity],
                 **settings: object) -> None:
        self.store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
        self.archive = Archive(tmp_path / "archive")
        directory = PartnerDirectory(partners)
        self.pipeline = Pipeline(store=self.store, archive=self.archive, partners=directory,
                                 readers=[])
        self.security = SecurityLog(self.store)
        self.processed: list = []
        self.endpoint = As2Endpoint(As2Settings(identities=identities, **settings), directory,
                                    self.pipeline, self.store, self.archive, self.security,
                                    on_received=self.processed.extend)
        self.records = As2Records(self.store)

    def post(self, request: WebRequest) -> WebReply:
        return self.endpoint.handle(request)

    def transmissions(self) -> int:
        return sum(self.store.counts_by_status().values())

    def payload(self, transmission_id: str) -> bytes:
        row = self.store.get_transmission(transmission_id)
        return self.archive.get(row.sha256)


@pytest.fixture
def mendelson(tmp_path):
    return Gateway(tmp_path, [mendelson_partner()], [mendelson_identity()])


# -- the loopback partner: pyas2lib sends as ``client``, we are ``edigw`` ----------------------

#: What the loopback partner sends unless told otherwise (its UNH is tampered with below).
ORDER = b"UNA:+.? 'UNB+UNOC:3+client+edigw+240101:1200+1'UNH+1+ORDERS:D:96A:UN'BGM+220+1'\r\n"


def client_partner(**as2: object) -> Partner:
    """The loopback partner's profile (signing not required unless told)."""
    d = loopback_fixtures()
    values: dict[str, object] = dict(as2_id="client", certificates=[d / "client_public.pem"],
                                     validate_certificates=False, require_signing=False)
    values.update(as2)
    return Partner(id="client", name="Client", channels=["as2"], as2=PartnerAs2(**values))


def our_identity() -> As2Identity:
    return As2Identity(as2_id="edigw", key_file=loopback_fixtures() / "server_private.pem",
                       passphrase="test")


def client_request(*, sign: bool = True, encrypt: bool = False, compress: bool = False,
                   data: bytes = ORDER, **header_changes: str | None) -> WebRequest:
    """A message the loopback partner sends (signed only by default, with a synchronous
    MDN request); headers changed or removed (None) as in ``capture_request``."""
    _msg, request = Sender().message(data, sign=sign, encrypt=encrypt, compress=compress)
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    return capture_request(head.encode() + b"\r\n" + request.body, **header_changes)


@pytest.fixture
def client(tmp_path):
    return Gateway(tmp_path, [client_partner()], [our_identity()])


def mdn_report(reply: WebReply) -> str:
    """The disposition-notification part of an MDN answered in an HTTP reply."""
    m = re.search(rb"Original-Message-ID:.*?(?=\r?\n--)", reply.body, re.S)
    assert m is not None, reply.body[:500]
    return m.group(0).decode()


def disposition(reply: WebReply) -> str:
    m = re.search(r"Disposition: automatic-action/MDN-sent-automatically; (.*)", mdn_report(reply))
    assert m is not None
    return m.group(1).strip()


def mic_of(reply: WebReply) -> str | None:
    m = re.search(r"Received-content-MIC: (.*)", mdn_report(reply))
    return m.group(1).strip() if m else None


def reply_as_mime(reply: WebReply) -> bytes:
    head = f"Content-Type: {reply.content_type}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in reply.headers.items())
    return head.encode() + b"\r\n" + reply.body


def partner_reads_mdn(raw: bytes, *, message_id: str, mic: bytes | None, our_cert: bytes,
                      signed: bool) -> tuple[str, str | None]:
    """What the sending partner makes of our MDN, with pyas2lib's own MDN parser."""
    original = as2.Message()
    original.message_id = message_id
    original.mic = mic
    original.receiver = as2.Partner(as2_name="edigw", verify_cert=our_cert, validate_certs=False,
                                    mdn_digest_alg="sha256" if signed else None)
    return as2.Mdn().parse(raw, find_message_cb=lambda _mid, _rcpt: original)


def pyas2lib_mic(name: str, partner_cert: bytes, *, binary: bool = False) -> str:
    """The MIC pyas2lib computes for a capture when it parses it alone (no edigw code)."""
    f = pyas2lib_fixtures()
    raw = (f / name).read_bytes()
    org = as2.Organization(as2_name="x", decrypt_key=(f / "cert_test.p12").read_bytes(),
                           decrypt_key_pass="test")
    partner = as2.Partner(as2_name="y", verify_cert=partner_cert, validate_certs=False,
                          canonicalize_as_binary=binary)
    msg = as2.Message()
    status, _exc, _mdn = msg.parse(raw, find_org_cb=lambda _x: org,
                                   find_partner_cb=lambda _x: partner)
    assert status == "processed"
    return f"{msg.mic.decode()}, {msg.digest_alg}"


# -- captures from Mendelson and IBM Sterling ---------------------------------------------------

MENDELSON = ["mecas2_signed.as2", "mecas2_compressed.as2", "mecas2_encrypted.as2",
             "mecas2_signed_encrypted.as2", "mecas2_compressed_signed_encrypted.as2"]


@pytest.mark.corpus
@pytest.mark.parametrize("name", MENDELSON)
def test_mendelson_message_accepted_with_its_payload_and_mdn(mendelson, name):
    """Each Mendelson capture is received with the payload Mendelson sent, one transmission,
    and a positive MDN whose MIC is the one pyas2lib computes for the capture."""
    f = pyas2lib_fixtures()
    reply = mendelson.post(fixture_request(name))
    assert reply.status == 200
    assert disposition(reply) == "processed"
    assert mendelson.transmissions() == 1
    (receipt,) = mendelson.processed
    assert mendelson.payload(receipt.transmission_id) == (f / "payload.txt").read_bytes()
    row = mendelson.records.recent()[0]
    assert row.transmission_id == receipt.transmission_id
    assert row.disposition == "processed" and row.mdn_state == "sent"
    assert row.encrypted == ("encrypted" in name)
    assert row.compressed == ("compressed" in name)
    if row.signed:
        expected = pyas2lib_mic(name, (f / "cert_mecas2_public.pem").read_bytes())
        assert mic_of(reply) == expected == row.mic
    if row.encrypted:
        assert "tripledes_192_cbc" in row.algorithms
    mid = row.message_id
    status, detail = partner_reads_mdn(
        reply_as_mime(reply), message_id=mid, our_cert=(f / "cert_test_public.pem").read_bytes(),
        mic=row.mic.split(",")[0].encode() if row.mic else None, signed=False)
    assert (status, detail) == ("processed", None)
    assert mendelson.store.get_transmission(receipt.transmission_id).channel == "as2"


@pytest.mark.corpus
def test_mendelson_signed_mic_is_the_digest_of_the_signed_part(mendelson):
    """The MIC is the SHA-256 of the signed MIME part as Mendelson signed it, computed here
    from the capture's bytes without pyas2lib: its headers with CRLF line ends, then its
    ``Content-Transfer-Encoding: binary`` body byte for byte (LF line ends kept)."""
    raw = (pyas2lib_fixtures() / "mecas2_signed.as2").read_bytes()
    request = capture_request(raw)
    boundary = re.search(r'boundary="([^"]+)"', request.headers["content-type"]).group(1)
    part = request.body.split(b"--" + boundary.encode())[1][1:-1]  # LFs around delimiters
    head, _, body = part.partition(b"\n\n")
    assert b"Content-Transfer-Encoding: binary" in head
    signed = head.replace(b"\n", b"\r\n") + b"\r\n\r\n" + body
    expected = base64.b64encode(hashlib.sha256(signed).digest()).decode()
    reply = mendelson.post(request)
    assert mic_of(reply) == f"{expected}, sha256"


@pytest.mark.corpus
def test_sterling_signed_compressed_accepted_with_binary_canonicalisation(tmp_path):
    """IBM Sterling signs LF-only content as bytes: with canonicalize_as_binary the message
    verifies, the X12 payload is received, and the asked-for signed MDN verifies."""
    gw = Gateway(tmp_path, [sterling_partner()], [sterling_identity()])
    reply = gw.post(fixture_request("sb2bi_signed_cmp.msg"))
    assert disposition(reply) == "processed"
    assert reply.content_type.startswith("multipart/signed")
    (receipt,) = gw.processed
    data = gw.payload(receipt.transmission_id)
    assert data.startswith(b"ISA*00*") and b"IEA*1*" in data
    row = gw.records.recent()[0]
    assert row.signed and row.compressed and row.mdn_signed
    assert row.mic.endswith(", sha1")
    status, detail = partner_reads_mdn(
        reply_as_mime(reply), message_id=row.message_id, signed=True,
        our_cert=load_identity(sterling_identity()).cert_pem,
        mic=row.mic.split(",")[0].encode())
    assert (status, detail) == ("processed", None)


@pytest.mark.corpus
def test_sterling_without_binary_canonicalisation_is_refused(tmp_path):
    """Without the switch the signature does not verify: refused, nothing received."""
    gw = Gateway(tmp_path, [sterling_partner(canonicalize_as_binary=False)],
                 [sterling_identity()])
    reply = gw.post(fixture_request("sb2bi_signed_cmp.msg"))
    assert disposition(reply).startswith("processed/error: ")
    assert gw.transmissions() == 0 and gw.processed == []


# -- the outer-header pitfall -------------------------------------------------------------------

@pytest.mark.corpus
def test_outer_base64_transfer_encoding_does_not_garble_the_payload(mendelson):
    """An outer ``Content-Transfer-Encoding: base64`` is not applied to the signed part, which
    has none of its own (pyas2lib copies outer headers onto it)."""
    reply = mendelson.post(fixture_request("mecas2_signed.as2",
                                           content_transfer_encoding="base64"))
    assert disposition(reply) == "processed"
    (receipt,) = mendelson.processed
    expected = (pyas2lib_fixtures() / "payload.txt").read_bytes()
    assert mendelson.payload(receipt.transmission_id) == expected


# -- refusals ---------------------------------------------------------------------------------

def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def test_tampered_signed_content_is_refused_integrity_check_failed(client):
    """One byte changed in the signed payload: integrity-check-failed, a security event, an
    as2_messages row without transmission, nothing received."""
    request = client_request()
    at = request.body.index(b"UNH+1+")
    tampered = WebRequest(request.method, request.url, request.headers,
                          _flip(request.body, at + 6), request.remote)
    reply = client.post(tampered)
    assert disposition(reply) == "processed/error: integrity-check-failed"
    assert client.transmissions() == 0 and client.processed == []
    row = client.records.recent()[0]
    assert row.transmission_id is None and row.mic is None
    assert row.disposition == "processed/error: integrity-check-failed"
    assert [e.kind for e in client.security.recent()] == ["integrity-check-failed"]


def test_tampered_encrypted_key_is_refused_decryption_failed(client):
    """One byte changed in the RSA-encrypted content key: decryption-failed."""
    request = client_request(encrypt=True)
    info = asn1_cms.ContentInfo.load(request.body)
    key = info["content"]["recipient_infos"][0].chosen["encrypted_key"].native
    at = request.body.index(key) + len(key) // 2
    reply = client.post(WebRequest(request.method, request.url, request.headers,
                                   _flip(request.body, at), request.remote))
    assert disposition(reply) == "processed/error: decryption-failed"
    assert client.transmissions() == 0
    assert client.security.recent()[0].kind == "decryption-failed"


def test_tampered_ciphertext_of_signed_message_is_refused(client):
    """A byte changed in the encrypted content of a signed message: the decrypted content no
    longer verifies (or no longer decrypts); refused, nothing received."""
    request = client_request(encrypt=True)
    reply = client.post(WebRequest(request.method, request.url, request.headers,
                                   _flip(request.body, len(request.body) - 200),
                                   request.remote))
    assert disposition(reply) in {"processed/error: integrity-check-failed",
                                  "processed/error: authentication-failed"}
    assert client.transmissions() == 0 and client.processed == []


def test_unsigned_message_refused_when_the_profile_requires_signing(tmp_path):
    """Encrypted but unsigned, to a partner whose profile requires signing:
    insufficient-message-security (RFC 4130 §7.4.3), nothing received."""
    gw = Gateway(tmp_path, [client_partner(require_signing=True)], [our_identity()])
    reply = gw.post(client_request(sign=False, encrypt=True))
    assert disposition(reply) == "processed/error: insufficient-message-security"
    assert gw.transmissions() == 0
    assert gw.security.recent()[0].kind == "insufficient-security"


def test_unencrypted_message_refused_when_the_profile_requires_encryption(tmp_path):
    """Signed but not encrypted, to a partner whose profile requires encryption."""
    gw = Gateway(tmp_path, [client_partner(require_encryption=True)], [our_identity()])
    reply = gw.post(client_request())
    assert disposition(reply) == "processed/error: insufficient-message-security"
    assert gw.transmissions() == 0


def test_signature_by_another_key_is_refused_authentication_failed(tmp_path):
    """The partner's profile holds another certificate: authentication-failed."""
    other = loopback_fixtures() / "server_public.pem"
    gw = Gateway(tmp_path, [client_partner(certificates=[other])], [our_identity()])
    reply = gw.post(client_request())
    assert disposition(reply) == "processed/error: authentication-failed"
    assert gw.transmissions() == 0
    assert gw.security.recent()[0].kind == "bad-signature"


def test_second_certificate_accepted_while_rotating(tmp_path):
    """Certificates after the first are tried for verifying (a rotation under way)."""
    d = loopback_fixtures()
    certs = [d / "server_public.pem", d / "client_public.pem"]
    gw = Gateway(tmp_path, [client_partner(certificates=certs)], [our_identity()])
    assert disposition(gw.post(client_request())) == "processed"
    assert gw.transmissions() == 1


def test_unknown_as2_from_is_refused_unknown_trading_partner(client):
    """An AS2-From no profile has: unsigned negative MDN, security event, no transmission."""
    reply = client.post(client_request(as2_from="intruder"))
    assert disposition(reply) == "processed/error: unknown-trading-partner"
    assert reply.content_type.startswith("multipart/report")
    assert client.transmissions() == 0
    row = client.records.recent()[0]
    assert row.partner_id is None and row.as2_from == "intruder" and row.transmission_id is None
    event = client.security.recent()[0]
    assert event.kind == "unknown-partner" and event.remote == "127.0.0.1"


def test_unknown_as2_to_is_refused(client):
    reply = client.post(client_request(as2_to="someone-else"))
    assert disposition(reply) == "processed/error: unknown-trading-partner"
    assert client.transmissions() == 0


def test_unknown_partner_without_mdn_request_gets_403(client):
    reply = client.post(client_request(as2_from="intruder", disposition_notification_to=None))
    assert reply.status == 403 and client.transmissions() == 0


@pytest.mark.parametrize("missing", ["as2_to", "as2_from", "message_id"])
def test_missing_as2_header_is_a_400(client, missing):
    """pyas2lib's parse raises on a missing AS2-To; the endpoint answers 400 first."""
    reply = client.post(client_request(**{missing: None}))
    assert reply.status == 400
    assert client.transmissions() == 0 and client.records.recent() == []


def test_repeated_message_id_is_a_duplicate_without_second_transmission(client):
    request = client_request()
    first = client.post(request)
    again = client.post(request)
    assert disposition(first) == "processed"
    assert disposition(again) == "processed/warning: duplicate-document"
    assert client.transmissions() == 1 and len(client.processed) == 1
    assert len(client.records.recent()) == 1


def test_refused_message_sent_again_once_fixed_is_accepted(tmp_path):
    """A refused Message-ID is no duplicate: the partner may resend it."""
    gw = Gateway(tmp_path, [client_partner()], [our_identity()])
    request = client_request()
    at = request.body.index(b"UNH+1+")
    gw.post(WebRequest(request.method, request.url, request.headers,
                       _flip(request.body, at + 6), request.remote))
    assert disposition(gw.post(request)) == "processed"
    (row,) = gw.records.recent()
    assert row.transmission_id is not None


def test_oversize_body_is_a_413_and_nothing_is_kept(tmp_path):
    gw = Gateway(tmp_path, [client_partner()], [our_identity()], max_size=1000)
    reply = gw.post(client_request())
    assert reply.status == 413
    assert gw.transmissions() == 0 and gw.records.recent() == []


def test_unexpected_error_answers_unexpected_processing_error(client, monkeypatch):
    """A receiver that fails in an unforeseen way: negative MDN, nothing acknowledged."""
    def broken(items):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(client.pipeline, "receive_many", broken)
    reply = client.post(client_request())
    assert disposition(reply) == "processed/error: unexpected-processing-error"
    assert client.processed == []


# -- messages built by pyas2lib as the sending partner -----------------------------------------

class Sender:
    """A trading partner (the loopback ``client`` key pair) sending to us (``server``)."""

    def __init__(self) -> None:
        d = loopback_fixtures()
        self.our_cert = (d / "server_public.pem").read_bytes()
        self.org = as2.Organization(as2_name="client",
                                    sign_key=(d / "client_private.pem").read_bytes(),
                                    sign_key_pass="test", mdn_url="http://127.0.0.1:1/mdn")

    def message(self, data: bytes, **partner: object) -> tuple[as2.Message, WebRequest]:
        values: dict[str, object] = dict(as2_name="edigw", encrypt_cert=self.our_cert,
                                         verify_cert=self.our_cert, validate_certs=False,
                                         sign=True, encrypt=True, mdn_mode=as2.SYNCHRONOUS_MDN,
                                         mdn_digest_alg="sha256")
        values.update(partner)
        msg = as2.Message(sender=self.org, receiver=as2.Partner(**values))
        msg.build(data, filename="order.edi")
        headers = {k.lower(): v for k, v in msg.headers.items()}
        return msg, WebRequest("POST", "http://127.0.0.1/as2", headers, msg.content, "127.0.0.1")


@pytest.fixture
def built(tmp_path):
    d = loopback_fixtures()
    partner = Partner(id="client", name="Client", channels=["as2"],
                      as2=PartnerAs2(as2_id="client", certificates=[d / "client_public.pem"],
                                     validate_certificates=False))
    me = As2Identity(as2_id="edigw", key_file=d / "server_private.pem", passphrase="test")
    return Gateway(tmp_path, [partner], [me]), Sender()


def _accepts(gw: Gateway, sender: Sender, msg: as2.Message, request: WebRequest,
             data: bytes) -> None:
    reply = gw.post(request)
    assert reply.status == 200
    status, detail = partner_reads_mdn(reply_as_mime(reply), message_id=msg.message_id,
                                       mic=msg.mic, our_cert=sender.our_cert, signed=True)
    assert (status, detail) == ("processed", None)  # signature and MIC verified by pyas2lib
    assert mic_of(reply) == f"{msg.mic.decode()}, {msg.digest_alg}"
    receipt = gw.processed[-1]
    assert gw.payload(receipt.transmission_id) == data
    assert gw.store.get_transmission(receipt.transmission_id).filename == "order.edi"


@pytest.mark.parametrize("enc_alg", ["tripledes_192_cbc", "aes_128_cbc", "aes_192_cbc",
                                     "aes_256_cbc"])
def test_pyas2lib_built_encryption_algorithms_accepted(built, enc_alg):
    gw, sender = built
    data = f"UNA:+.? 'UNB+UNOC:3+client+edigw+{enc_alg}'\r\n".encode()
    msg, request = sender.message(data, enc_alg=enc_alg)
    _accepts(gw, sender, msg, request, data)
    assert enc_alg in gw.records.recent()[0].algorithms


@pytest.mark.parametrize("digest", ["sha1", "sha224", "sha256", "sha384", "sha512"])
def test_pyas2lib_built_digest_algorithms_accepted(built, digest):
    gw, sender = built
    data = f"order signed with {digest}\r\n".encode()
    msg, request = sender.message(data, digest_alg=digest, enc_alg="aes_256_cbc",
                                  mdn_digest_alg=digest)
    _accepts(gw, sender, msg, request, data)


def test_pyas2lib_built_rsa_oaep_key_transport_accepted(built, monkeypatch):
    """RSA-OAEP for the content key (pyas2lib 1.4.4's build does not pass ``key_enc_alg``
    on, so the sending side's encryption is told here)."""
    gw, sender = built
    monkeypatch.setattr(as2, "encrypt_message", lambda data, alg, cert: as2_cms.encrypt_message(
        data, alg, cert, key_enc_alg="rsaes_oaep"))
    data = b"order with OAEP\r\n"
    msg, request = sender.message(data, enc_alg="aes_128_cbc")
    _accepts(gw, sender, msg, request, data)
    assert gw.records.recent()[0].algorithms == "sha256, aes_128_cbc, rsaes_oaep"


def test_pyas2lib_built_compressed_signed_encrypted_accepted(built):
    gw, sender = built
    data = b"compressed order\r\n" * 50
    msg, request = sender.message(data, compress=True)
    _accepts(gw, sender, msg, request, data)
    assert gw.records.recent()[0].compressed


def test_pyas2lib_built_unsigned_mdn_when_the_profile_says_never_sign(tmp_path):
    d = loopback_fixtures()
    partner = Partner(id="client", name="Client", channels=["as2"],
                      as2=PartnerAs2(as2_id="client", certificates=[d / "client_public.pem"],
                                     validate_certificates=False, mdn_sign=False))
    me = As2Identity(as2_id="edigw", key_file=d / "server_private.pem", passphrase="test")
    gw, sender = Gateway(tmp_path, [partner], [me]), Sender()
    _msg, request = sender.message(b"order\n")
    reply = gw.post(request)
    assert reply.content_type.startswith("multipart/report")
    assert disposition(reply) == "processed"


def test_async_mdn_is_queued_after_the_payload_is_received(built):
    """Receipt-Delivery-Option: 200 with a short text; the row is pending with the URL and the
    archived MDN, which the partner's pyas2lib accepts (signature and MIC)."""
    gw, sender = built
    data = b"async order\r\n"
    msg, request = sender.message(data, mdn_mode=as2.ASYNCHRONOUS_MDN)
    reply = gw.post(request)
    assert reply.status == 200 and b"MDN will be sent" in reply.body
    row = gw.records.recent()[0]
    assert row.mdn_mode == "async" and row.mdn_state == "pending"
    assert row.mdn_url == "http://127.0.0.1:1/mdn" and row.mdn_next_at is not None
    assert [r.id for r in gw.records.due_mdns(row.mdn_next_at)] == [row.id]
    raw = gw.archive.get(row.mdn_archive_key)
    headers, body = mdn_http_parts(raw)
    assert headers["Content-Type"] == row.mdn_content_type
    status, detail = partner_reads_mdn(raw, message_id=msg.message_id, mic=msg.mic,
                                       our_cert=sender.our_cert, signed=True)
    assert (status, detail) == ("processed", None)
    assert gw.payload(gw.processed[0].transmission_id) == data
    acked = gw.store.get_transmission(gw.processed[0].transmission_id)
    assert acked.acknowledged_at is not None


def test_compressed_but_unencrypted_message_refused_when_encryption_is_required(tmp_path):
    """pyas2lib only looks at the Content-Type, which a compressed message passes: the
    endpoint checks what was received (the reviewer's finding)."""
    gw = Gateway(tmp_path, [client_partner(require_encryption=True, require_signing=False)],
                 [our_identity()])
    reply = gw.post(client_request(sign=False, compress=True))
    assert disposition(reply) == "processed/error: insufficient-message-security"
    assert gw.transmissions() == 0
    assert gw.security.recent()[0].kind == "insufficient-security"
    open_gw = Gateway(tmp_path / "b", [client_partner(require_signing=False)],
                      [our_identity()])
    assert disposition(open_gw.post(client_request(sign=False, compress=True))) == "processed"


def test_decompression_bomb_is_refused_before_it_is_inflated(tmp_path):
    """A 64 MiB run of zeros compressed to ~64 KB, unsigned, to a partner requiring
    signatures: pyas2lib would inflate it whole before looking at the signature; the
    endpoint's ceiling (max_size) refuses it with decompression-failed, memory kept low."""
    import resource
    import zlib

    from asn1crypto import cms

    bomb = zlib.compress(b"\0" * (64 << 20), 9)
    content = cms.ContentInfo({
        "content_type": "compressed_data",
        "content": cms.CompressedData({
            "version": "v0",
            "compression_algorithm": {"algorithm": "zlib"},
            "encap_content_info": {"content_type": "data", "content": bomb}})}).dump()
    gw = Gateway(tmp_path, [client_partner()], [our_identity()], max_size=1 << 20)
    request = client_request(sign=False, compress=True)
    request = WebRequest(method="POST", url=request.url, body=content, remote="203.0.113.7",
                         headers={**request.headers, "content-type":
                                  "application/pkcs7-mime; smime-type=compressed-data"})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reply = gw.post(request)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert disposition(reply) == "processed/error: decompression-failed"
    assert gw.transmissions() == 0
    assert "inflates to more than 1048576 bytes" in gw.records.recent()[0].detail
    assert grown_mib < 48, f"the process grew by {grown_mib:.0f} MiB"
