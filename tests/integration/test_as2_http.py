"""AS2 over real HTTP to a running ``edigw serve``, with messages built by the ``openssl``
command line (``tests/as2_openssl.py``), never by pyas2lib: each combination is accepted
with a signed MDN that ``openssl cms -verify`` accepts with our certificate and whose MIC
matches the one computed here; tampered copies get the right negative disposition and leave
no transmission; an EANCOM order ends on RabbitMQ and in ``edigw log`` with channel ``as2``;
asynchronous MDNs reach a small HTTP server of the test, retried when it refuses.

Certificates: the loopback pair made at test time (``tests/as2_keys.py``: ``as2client`` is
the partner, ``as2server`` us; keys protected with 'test'). The order is the repository's
EANCOM ORDERS D96A mapping sample; nothing comes from ../shared.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.channels.as2.records import As2MessageRow, As2Records
from tests.as2_keys import loopback_pair
from tests.as2_openssl import (
    As2Message,
    MdnReport,
    Party,
    build_message,
    flip_in_encrypted_content,
    flip_in_signature,
    flip_in_signed_content,
    openssl_compresses,
    read_mdn,
)
from tests.integration.e2e import Service, Workspace, _toml_str
from tests.integration.naive_edifact import naive_messages, naive_senders

pytestmark = pytest.mark.integration

PARTNER_AS2 = "as2client"
OUR_AS2 = "as2server"
PARTNER_ID = "retail-as2"


REPO = Path(__file__).resolve().parents[2]
ORDER_SAMPLE = REPO / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"


# -- certificates and one EANCOM order --------------------------------------------------------

def _fixtures() -> Path:
    return loopback_pair()


def _partner() -> Party:
    f = _fixtures()
    return Party(PARTNER_AS2, cert=f / "client_public.pem", key=f / "client_private.pem",
                 passin="pass:test")


def _our_cert() -> Path:
    return _fixtures() / "server_public.pem"


def _eancom_order() -> tuple[str, bytes]:
    """The repository's one-message EANCOM D96A ORDERS sample (its name, its bytes)."""
    return ORDER_SAMPLE.name, ORDER_SAMPLE.read_bytes()


# -- the running gateway ------------------------------------------------------------------------

def _configure(ws: Workspace, order: bytes) -> None:
    """[as2] with our identity (fast MDN retries), and the partner with its AS2 profile and the
    UNB sender of the order."""
    f = _fixtures()
    ws.extra_config = f"""
[as2]
mdn_retry_initial = 0.2
mdn_retry_max = 0.5
mdn_timeout = 5

[[as2.identities]]
as2_id = "{OUR_AS2}"
key_file = {_toml_str(str(f / "server_private.pem"))}
passphrase = "test"
"""
    ws.write_config()
    sender, qualifier = naive_senders(order)[0]
    q = f", qualifier = {_toml_str(qualifier)}" if qualifier else ""
    (ws.partners / f"{PARTNER_ID}.toml").write_text(f"""\
id = "{PARTNER_ID}"
name = "Retail (AS2 test)"
channels = ["as2"]

[identifiers]
unb = [{{ id = {_toml_str(sender)}{q} }}]

[[documents]]
type = "order"
format = "edifact"

[as2]
as2_id = "{PARTNER_AS2}"
certificates = [{_toml_str(str(f / "client_public.pem"))}]
validate_certificates = false  # the loopback pair is self-signed
require_signing = false  # encrypted-only and compressed-only messages are tested too
""")


def _serve(ws: Workspace) -> Service:
    """Start the service and wait until its HTTP server answers (``gateway_started`` may be
    logged a moment before uvicorn accepts connections)."""
    service = ws.serve()

    def healthy() -> bool:
        try:
            return httpx.get(f"{service.http_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    service.wait_until(healthy, 30, "GET /healthz answered")
    return service


@pytest.fixture(scope="module")
def order() -> tuple[str, bytes]:
    return _eancom_order()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, rabbit_url, order) -> Iterator[tuple[Workspace, Service]]:
    """One ``edigw serve`` on SQLite for the combinations and the tampered copies."""
    root = tmp_path_factory.mktemp("as2gw")
    with Workspace.create(root, f"sqlite:///{root / 'edigw.sqlite3'}") as ws:
        _configure(ws, order[1])
        yield ws, _serve(ws)


def _post(service: Service, msg: As2Message) -> httpx.Response:
    return httpx.post(f"{service.http_url}/as2", content=msg.body, headers=msg.headers,
                      timeout=30)


def _mdn(reply: httpx.Response) -> MdnReport:
    assert reply.status_code == 200, reply.text
    return read_mdn(reply.headers["content-type"], reply.content, signer_cert=_our_cert())


def _row(ws: Workspace, msg: As2Message) -> As2MessageRow | None:
    return As2Records(ws.store).find(PARTNER_AS2, OUR_AS2, msg.message_id)


def _transmissions_of(ws: Workspace, msg: As2Message) -> list:
    return [t for t in ws.transmissions() if t.channel_ref == msg.message_id]


# -- each combination is accepted with a verifiable MDN whose MIC matches --------------------

COMBINATIONS = {
    "signed-sha1": dict(sign_md="sha1", encrypt_cipher=None),
    "signed-sha224": dict(sign_md="sha224", encrypt_cipher=None),
    "signed-sha256": dict(sign_md="sha256", encrypt_cipher=None),
    "signed-sha384": dict(sign_md="sha384", encrypt_cipher=None),
    "signed-sha512": dict(sign_md="sha512", encrypt_cipher=None),
    "encrypted-des3": dict(sign_md=None, encrypt_cipher="des3"),
    "encrypted-aes128": dict(sign_md=None, encrypt_cipher="aes128"),
    "encrypted-aes256-oaep": dict(sign_md=None, encrypt_cipher="aes256", oaep=True),
    "signed-encrypted-des3-sha1": dict(sign_md="sha1", encrypt_cipher="des3"),
    "signed-encrypted-aes128-sha256": dict(sign_md="sha256", encrypt_cipher="aes128"),
    "signed-encrypted-aes192-sha384": dict(sign_md="sha384", encrypt_cipher="aes192"),
    "signed-encrypted-aes256-sha512": dict(sign_md="sha512", encrypt_cipher="aes256"),
    "signed-encrypted-aes256-oaep": dict(sign_md="sha256", encrypt_cipher="aes256", oaep=True),
    "compressed": dict(sign_md=None, encrypt_cipher=None, compress_first=True),
    "compressed-signed-encrypted": dict(sign_md="sha256", encrypt_cipher="aes256",
                                        compress_first=True),
}


@pytest.mark.parametrize("combo", sorted(COMBINATIONS))
def test_openssl_message_accepted_with_signed_mdn_and_matching_mic(gateway, order, combo):
    """An openssl-built message in this combination is answered with a synchronous signed MDN
    'processed' that verifies with our certificate and names the message, with the MIC of
    RFC 4130 §7.3.1 computed here; the payload is one transmission on channel as2."""
    ws, service = gateway
    msg = build_message(order[1], sender=_partner(), recipient_cert=_our_cert(),
                        as2_to=OUR_AS2, **COMBINATIONS[combo])

    mdn = _mdn(_post(service, msg))

    assert mdn.signed
    assert (mdn.disposition_type, mdn.modifier) == ("processed", None), mdn.disposition
    assert mdn.original_message_id == msg.message_id
    assert mdn.mic == msg.mic, f"MIC {mdn.mic}, {mdn.mic_alg}; computed {msg.mic}, {msg.mic_alg}"
    assert mdn.mic_alg == msg.mic_alg
    row = _row(ws, msg)
    assert row is not None and row.accepted and row.mdn_state == "sent"
    assert (row.signed, row.encrypted, row.compressed) == (
        msg.signed, msg.encrypted, msg.compressed)
    (transmission,) = _transmissions_of(ws, msg)
    assert transmission.channel == "as2" and transmission.partner_id == PARTNER_ID
    assert ws.archive_path(transmission.sha256).read_bytes() == order[1]


def test_openssl_cannot_compress_here_so_asn1crypto_does():
    """Documents why compression is built with asn1crypto: this OpenSSL lacks zlib (if this
    fails, openssl can compress and the helper could use it)."""
    assert not openssl_compresses()


# -- tampered copies ------------------------------------------------------------------------------

@pytest.mark.parametrize(("tamper", "combo", "modifier"), [
    (flip_in_signature, dict(sign_md="sha256", encrypt_cipher=None), "authentication-failed"),
    (flip_in_signed_content, dict(sign_md="sha256", encrypt_cipher=None),
     "integrity-check-failed"),
    (flip_in_encrypted_content, dict(sign_md="sha256", encrypt_cipher="aes256"),
     "decryption-failed"),
    (flip_in_encrypted_content, dict(sign_md="sha1", encrypt_cipher="des3"),
     "decryption-failed"),
], ids=["signature", "signed-content", "encrypted-aes256", "encrypted-des3"])
def test_tampered_copy_gets_negative_mdn_and_no_transmission(gateway, order, tamper, combo,
                                                             modifier):
    """One bit changed: in the signature value (the signature does not verify:
    authentication-failed), in the signed content (its digest does not match:
    integrity-check-failed, RFC 4130 §7.4.3), in the encrypted content (decryption-failed).
    The MDN is still signed by us; nothing is received."""
    ws, service = gateway
    before = len(ws.transmissions())
    msg = tamper(build_message(order[1], sender=_partner(), recipient_cert=_our_cert(),
                               as2_to=OUR_AS2, **combo))

    mdn = _mdn(_post(service, msg))

    assert mdn.signed
    assert mdn.disposition_type == "processed"
    assert mdn.modifier == modifier, mdn.disposition
    assert mdn.original_message_id == msg.message_id
    row = _row(ws, msg)
    assert row is not None and not row.accepted and modifier in row.disposition
    assert _transmissions_of(ws, msg) == [] and len(ws.transmissions()) == before


# -- an EANCOM order, end to end ----------------------------------------------------------------

@pytest.fixture
def fresh(tmp_path, store_url, rabbit_url, order) -> Iterator[tuple[Workspace, Service]]:
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        _configure(ws, order[1])
        yield ws, _serve(ws)


def test_signed_encrypted_eancom_order_reaches_queue_and_log(fresh, order):
    """An EANCOM ORDERS, signed and encrypted by openssl, with a synchronous signed MDN:
    the MDN verifies and its MIC matches; the order is one document on RabbitMQ and the
    transmission is in ``edigw log`` with channel as2; the same Message-ID again is answered
    as a duplicate without a second transmission."""
    ws, service = fresh
    path, data = order
    msg = build_message(data, sender=_partner(), recipient_cert=_our_cert(), as2_to=OUR_AS2,
                        sign_md="sha256", encrypt_cipher="aes256", filename=Path(path).name)

    mdn = _mdn(_post(service, msg))
    assert (mdn.disposition_type, mdn.modifier, mdn.mic) == ("processed", None, msg.mic)

    service.wait_until(lambda: ws.counts().get("PUBLISHED") == 1, 30, "the order published")
    (received,) = ws.consume(expected=1)
    (source,) = naive_messages(data)
    assert received.routing_key == f"order.{PARTNER_ID}"
    bgm = source.first("BGM")
    assert bgm is not None and bgm[2][0].encode() in received.body  # the order number
    (entry,) = ws.log_json()
    assert entry["channel"] == "as2" and entry["partner_id"] == PARTNER_ID
    assert entry["status"] == "PUBLISHED"

    again = _mdn(_post(service, msg))
    assert (again.disposition_type, again.modifier) == ("processed", "duplicate-document")
    assert len(ws.transmissions()) == 1


# -- asynchronous MDNs ---------------------------------------------------------------------------

class MdnReceiver:
    """The partner's MDN URL: a plain http.server answering the next of ``statuses`` (then
    200), keeping what it was sent."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                outer.received.append((dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/as2/mdn"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("refusals", [0, 2], ids=["first-try", "after-two-refusals"])
def test_async_mdn_delivered_by_the_sender(gateway, order, refusals):
    """With Receipt-Delivery-Option the POST is answered 200 at once; the signed MDN then
    reaches the partner's URL (verifying, MIC matching). A URL that answers 503 twice gets
    it on the third attempt: three attempts recorded, state sent."""
    ws, service = gateway
    receiver = MdnReceiver([503] * refusals)
    try:
        msg = build_message(order[1], sender=_partner(), recipient_cert=_our_cert(),
                            as2_to=OUR_AS2, sign_md="sha256", encrypt_cipher="aes128",
                            receipt_url=receiver.url)
        started = time.monotonic()
        reply = _post(service, msg)
        assert reply.status_code == 200 and time.monotonic() - started < 10
        assert "multipart" not in reply.headers.get("content-type", "")

        _wait(lambda: any(s == 200 for *_, s in receiver.received), 60, "the MDN delivered")
        row = _wait(lambda: (r := _row(ws, msg)) and r.mdn_state == "sent" and r, 10,
                    "the delivery recorded")
        assert row.mdn_attempts == refusals + 1 == len(receiver.received)
        assert row.mdn_last_error is None and row.mdn_sent_at is not None
        headers, body, _status = receiver.received[-1]
        assert headers["AS2-From"] == OUR_AS2 and headers["AS2-To"] == PARTNER_AS2
        mdn = read_mdn(headers["Content-Type"], body, signer_cert=_our_cert())
        assert mdn.signed and mdn.disposition_type == "processed" and mdn.modifier is None
        assert mdn.original_message_id == msg.message_id and mdn.mic == msg.mic
    finally:
        receiver.close()


# -- certificate validity in `edigw channels` ------------------------------------------------------

def _self_signed(path: Path, name: str, *, start_days: int, days: int) -> Path:
    """A self-signed certificate valid from ``start_days`` (negative: past) for ``days``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=start_days))
            .not_valid_after(now + dt.timedelta(days=start_days + days))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_channels_lists_expiring_and_expired_certificates(tmp_path, rabbit_url, order):
    """`edigw channels` shows our certificate OK, a partner's expiring one and its expired
    rotation certificate with their dates, and a missing file as unreadable; the readable
    ones are recorded for the tracker."""
    from gateway.channels.as2.certificates import certificate_statuses

    with Workspace.create(tmp_path / "gw", f"sqlite:///{tmp_path / 'edigw.sqlite3'}") as ws:
        _configure(ws, order[1])
        expiring = _self_signed(tmp_path / "expiring.pem", "expiring", start_days=-30, days=32)
        expired = _self_signed(tmp_path / "expired.pem", "expired", start_days=-30, days=20)
        profile = ws.partners / f"{PARTNER_ID}.toml"
        text = profile.read_text()
        current = _toml_str(str(_fixtures() / "client_public.pem"))
        profile.write_text(text.replace(
            f"certificates = [{current}]",
            f"certificates = [{_toml_str(str(expiring))}, {_toml_str(str(expired))}, "
            f"{_toml_str(str(tmp_path / 'missing.pem'))}]"))
        ws.store  # noqa: B018 - migrated before the CLI runs

        out = ws.cli("channels").stdout

        lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        assert "OK" in lines[f"certificate:as2:own:{OUR_AS2}"]
        assert "EXPIRING" in lines[f"certificate:as2:{PARTNER_ID}:1"]
        assert "EXPIRED" in lines[f"certificate:as2:{PARTNER_ID}:2"]
        assert "UNREADABLE" in lines[f"certificate:as2:{PARTNER_ID}:3"]
        recorded = {s.id: s.state for s in certificate_statuses(ws.store, 30)}
        assert recorded == {f"as2:own:{OUR_AS2}": "ok", f"as2:{PARTNER_ID}:1": "expiring",
                            f"as2:{PARTNER_ID}:2": "expired", f"as2:{PARTNER_ID}:3": "unreadable"}
