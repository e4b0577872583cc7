"""Outbound AS2 over real HTTP, through the ``OutboundDispatcher`` on a real SQLite store.

(a) To an independent receiver: a small HTTP server of this test that takes the message
apart with the ``openssl`` command line only (``cms -decrypt``, ``cms -verify``; compressed
data opened with asn1crypto and zlib, as this OpenSSL has no zlib), checks that the payload is
the bytes we archived, computes the MIC itself and answers an MDN it writes by hand and signs
with ``openssl cms -sign``. No pyas2lib on that side.

(b) To edigw's own AS2 endpoint (the partner's gateway: ``As2Endpoint`` served by
``HttpServer``/uvicorn, with its store, archive and pipeline): synchronous MDN; asynchronous
MDN, posted back by the partner's ``AsyncMdnSender`` to our own endpoint, which makes the row
DELIVERED (or FAILED with the disposition of a negative one); a negative MDN for an unknown
partner; a forged MDN refused.

Keys: made at test time (``tests/as2_keys.py``): us ``edigw`` (CN=as2server pair), the
partner ``retail`` (CN=as2client pair), keys protected with 'test'.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import re
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asn1crypto import cms

from gateway.channels.as2.endpoint import As2Endpoint
from gateway.channels.as2.mdn_sender import AsyncMdnSender
from gateway.channels.as2.sender import As2Sender
from gateway.channels.as2.settings import As2Identity, As2Settings
from gateway.channels.outbound import OutboundDispatcher
from gateway.config import Partner, PartnerAs2, PartnerDirectory, PartnerOutbound
from gateway.core.pipeline import Pipeline
from gateway.core.status import OutboundStatus, TransmissionStatus
from gateway.http.server import HttpServer, build_app
from gateway.store.archive import Archive
from gateway.store.db import Store
from gateway.store.security import SecurityLog
from tests.as2_keys import loopback_pair
from tests.integration.rabbit import sqlite_store
from tests.integration.sshd import free_port
from tests.outbound_rows import pending_row
from tests.services import require_program

pytestmark = pytest.mark.integration

US, PARTNER = "edigw", "retail"
#: LF line ends and 8-bit text: they must arrive as they are.
DOCUMENT = ("UNA:+.? '\nUNB+UNOC:3+5400000000003:14+5412345000013:14+261127:1200+7'\n"
            "UNH+1+ORDRSP:D:96A:UN:EAN005'\nBGM+231+4711+29'\nNAD+BY+++Müller GmbH'\n"
            "UNT+4+1'\nUNZ+1+7'\n").encode("latin-1")


def keys() -> Path:
    return loopback_pair()


def our_identity() -> As2Identity:
    return As2Identity(as2_id=US, key_file=keys() / "server_private.pem", passphrase="test")


def partner_profile(url: str, **as2: Any) -> Partner:
    values: dict[str, Any] = dict(as2_id=PARTNER, certificates=[keys() / "client_public.pem"],
                                  validate_certificates=False, url=url)
    values.update(as2)
    return Partner(id=PARTNER, name="Retail", channels=["as2"], as2=PartnerAs2(**values),
                   outbound=PartnerOutbound(channel="as2"))


# -- our side ------------------------------------------------------------------------------------

class Us:
    """Our gateway: store, archive, the AS2 sender in a dispatcher, and our own ``POST /as2``
    (where asynchronous MDNs come back)."""

    def __init__(self, root: Path, profile: Partner) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store: Store = sqlite_store(root / "us.sqlite3")
        self.archive = Archive(root / "archive")
        self.partners = PartnerDirectory([profile])
        port = free_port()
        self.settings = As2Settings(identities=[our_identity()],
                                    receipt_url=f"http://127.0.0.1:{port}/as2")
        pipeline = Pipeline(store=self.store, archive=self.archive, partners=self.partners,
                            readers=[])
        self.endpoint = As2Endpoint(self.settings, self.partners, pipeline, self.store,
                                    self.archive, SecurityLog(self.store))
        self.http = HttpServer(build_app(endpoints={"/as2": self.endpoint}),
                               port=port).start_in_thread()
        self.sender = As2Sender(self.settings)
        self.dispatcher = OutboundDispatcher(self.store, self.archive,
                                             senders={"as2": self.sender},
                                             partner=self.partners.get, retry_initial=0.01)

    def use(self, profile: Partner) -> None:
        self.partners.replace(PartnerDirectory([profile]))

    def queue(self, data: bytes = DOCUMENT, filename: str = "ordrsp-4711.edi") -> str:
        return pending_row(self.store, self.archive, partner_id=PARTNER, channel="as2",
                           data=data, filename=filename).id

    def row(self, oid: str) -> Any:
        row = self.store.get_outbound(oid)
        assert row is not None
        return row

    def close(self) -> None:
        self.http.stop()
        self.sender.close()
        self.store.close()


@pytest.fixture
def us(tmp_path) -> Iterator[Us]:
    side = Us(tmp_path / "us", partner_profile("http://127.0.0.1:9/as2"))
    yield side
    side.close()


# -- (a) the openssl receiver ------------------------------------------------------------------

def openssl(*args: str, data: bytes | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} {args[1]}: {proc.stderr.decode()[-500:]}")
    return proc.stdout


def split_entity(entity: bytes) -> tuple[dict[str, str], bytes]:
    head, _, body = entity.partition(b"\r\n\r\n")
    text = re.sub(r"\r\n[ \t]+", " ", head.decode("utf-8"))
    headers = {}
    for line in text.split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, body


class OpensslPartner:
    """An AS2 receiver made of ``openssl cms``: decrypt, verify, uncompress, MIC, signed MDN.

    ``disposition`` and ``mic`` (when set) replace what it would answer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.received: list[dict[str, Any]] = []
        self.disposition: str | None = None
        self.mic: str | None = None
        self.async_mdns: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    status, reply_headers, reply = outer.receive(headers, body)
                except Exception as exc:  # the test sees it in received[]
                    outer.received.append({"error": repr(exc)})
                    status, reply_headers, reply = 500, {}, repr(exc).encode()
                self.send_response(status)
                for k, v in reply_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/as2"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def receive(self, headers: dict[str, str], body: bytes
                ) -> tuple[int, dict[str, str], bytes]:
        k = keys()
        work = Path(tempfile.mkdtemp(dir=self.folder))
        (work / "body.der").write_bytes(body)
        assert "enveloped-data" in headers["content-type"]
        openssl("cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(work / "body.der"),
                "-recip", str(k / "client_public.pem"), "-inkey", str(k / "client_private.pem"),
                "-passin", "pass:test", "-out", str(work / "decrypted.eml"))
        decrypted = (work / "decrypted.eml").read_bytes()
        top, multipart = split_entity(decrypted)
        assert top["content-type"].startswith("multipart/signed")
        # The signed part and the detached signature, split here (RFC 1847: the CRLF before
        # a boundary belongs to the boundary), verified with ``-binary``: the bytes as sent.
        boundary = re.search(r'boundary="?([^";]+)"?', top["content-type"])
        assert boundary is not None
        delimiter = b"\r\n--" + boundary.group(1).encode()
        first, second = (b"\r\n" + multipart).split(delimiter)[1:3]
        signed = first.removeprefix(b"\r\n")
        _sig_headers, sig_b64 = split_entity(second.removeprefix(b"\r\n"))
        (work / "signed.eml").write_bytes(signed)
        (work / "signature.der").write_bytes(base64.b64decode(sig_b64))
        openssl("cms", "-verify", "-binary", "-inform", "DER", "-in",
                str(work / "signature.der"), "-content", str(work / "signed.eml"),
                "-CAfile", str(k / "server_public.pem"), "-partial_chain", "-purpose", "any",
                "-out", str(work / "verified.eml"))
        assert (work / "verified.eml").read_bytes() == signed
        micalg = re.search(rb"micalg=([A-Za-z0-9-]+)", decrypted)
        assert micalg is not None
        alg = micalg.group(1).decode().replace("-", "").lower()
        mic = base64.b64encode(hashlib.new(alg, signed).digest()).decode()
        part_headers, content = split_entity(signed)
        compressed = "compressed-data" in part_headers["content-type"]
        if compressed:
            info = cms.ContentInfo.load(content)
            inner = info["content"]["encap_content_info"]["content"].native
            part_headers, content = split_entity(zlib.decompress(inner))
        self.received.append({"headers": headers, "part_headers": part_headers,
                              "content": content, "mic": mic, "alg": alg,
                              "compressed": compressed})
        message_id = headers["message-id"].strip("<>")
        answer = self.mdn(message_id, headers, self.mic or mic, alg, work)
        url = headers.get("receipt-delivery-option")
        if url:  # asynchronous: kept for the test to post, the request answered plainly
            self.async_mdns.append((url, answer[1], answer[2]))
            return 200, {"Content-Type": "text/plain"}, b"received; MDN to follow\n"
        return answer

    def mdn(self, message_id: str, headers: dict[str, str], mic: str, alg: str,
            work: Path) -> tuple[int, dict[str, str], bytes]:
        """A multipart/report MDN, signed with ``openssl cms -sign`` (S/MIME output with
        CRLF line ends); its top headers become the HTTP headers."""
        disposition = self.disposition or "processed"
        boundary = f"report-{uuid.uuid4().hex}"
        report = (
            f'Content-Type: multipart/report; report-type=disposition-notification; '
            f'boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
            f"The message was received by the openssl test partner.\r\n"
            f"--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n"
            f"Reporting-UA: openssl-test-partner\r\n"
            f"Original-Recipient: rfc822; {PARTNER}\r\nFinal-Recipient: rfc822; {PARTNER}\r\n"
            f"Original-Message-ID: <{message_id}>\r\n"
            f"Disposition: automatic-action/MDN-sent-automatically; {disposition}\r\n"
            f"Received-Content-MIC: {mic}, {alg}\r\n\r\n"
            f"--{boundary}--\r\n").encode()
        (work / "report.eml").write_bytes(report)
        k = keys()
        smime = openssl("cms", "-sign", "-in", str(work / "report.eml"), "-signer",
                        str(k / "client_public.pem"), "-inkey", str(k / "client_private.pem"),
                        "-passin", "pass:test", "-md", alg, "-outform", "SMIME", "-crlfeol")
        top, body = split_entity(smime)
        reply = {"Content-Type": top["content-type"], "AS2-From": PARTNER,
                 "AS2-To": headers["as2-from"], "AS2-Version": "1.2",
                 "Message-ID": f"<mdn-{uuid.uuid4().hex}@{PARTNER}>"}
        return 200, reply, body

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def openssl_partner(tmp_path) -> Iterator[OpensslPartner]:
    require_program("openssl", "openssl")
    partner = OpensslPartner(tmp_path)
    yield partner
    partner.close()


@pytest.mark.parametrize("compress", [False, True], ids=["signed-encrypted",
                                                         "compressed-signed-encrypted"])
def test_openssl_partner_gets_our_bytes_and_its_signed_mdn_makes_it_delivered(
        us, openssl_partner, compress):
    us.use(partner_profile(openssl_partner.url, compress=compress))
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 1, (us.row(oid).last_error,
                                                  openssl_partner.received)

    (got,) = openssl_partner.received
    assert "error" not in got, got
    assert got["content"] == DOCUMENT
    assert got["compressed"] == compress
    assert got["part_headers"]["content-type"] == "application/EDIFACT"
    assert got["part_headers"]["content-disposition"] == 'attachment; filename="ordrsp-4711.edi"'
    assert got["headers"]["as2-from"] == US and got["headers"]["as2-to"] == PARTNER
    row = us.row(oid)
    assert row.status == OutboundStatus.DELIVERED, row.last_error
    assert row.remote_id == got["headers"]["message-id"].strip("<>")
    assert row.receipt == (f"processed; MIC ok {got['mic']}, sha256; signed MDN verified")
    assert us.store.get_transmission(row.transmission_id).status == TransmissionStatus.DELIVERED


def test_openssl_partner_negative_mdn_fails_the_row_with_its_disposition(us, openssl_partner):
    us.use(partner_profile(openssl_partner.url))
    openssl_partner.disposition = "processed/error: unexpected-processing-error"
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 0

    row = us.row(oid)
    assert row.status == OutboundStatus.FAILED and row.attempts == 1
    assert row.last_error.startswith(
        "refused by the partner: processed/error: unexpected-processing-error")
    transmission = us.store.get_transmission(row.transmission_id)
    assert transmission.status == TransmissionStatus.FAILED and transmission.stage == "deliver"


def test_openssl_partner_returning_another_mic_fails_the_row(us, openssl_partner):
    us.use(partner_profile(openssl_partner.url))
    openssl_partner.mic = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 0

    row = us.row(oid)
    assert row.status == OutboundStatus.FAILED
    assert "MIC mismatch: we computed" in row.last_error
    assert openssl_partner.mic in row.last_error


# -- (b) edigw's own endpoint as the partner ------------------------------------------------------

class TheirGateway:
    """The partner's edigw: its AS2 endpoint (identity ``retail``) over HTTP, its store and
    pipeline, and its asynchronous MDN sender (driven by ``deliver_mdns``)."""

    def __init__(self, root: Path, **profile: Any) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store: Store = sqlite_store(root / "them.sqlite3")
        self.archive = Archive(root / "archive")
        values: dict[str, Any] = dict(as2_id=US, certificates=[keys() / "server_public.pem"],
                                      validate_certificates=False, require_signing=True)
        values.update(profile)
        self.partners = PartnerDirectory([Partner(id="edigw-supplier", name="Supplier",
                                                  channels=["as2"], as2=PartnerAs2(**values))])
        self.settings = As2Settings(identities=[As2Identity(
            as2_id=PARTNER, key_file=keys() / "client_private.pem", passphrase="test")],
            mdn_retry_initial=0.05, mdn_retry_max=0.2, mdn_timeout=5)
        pipeline = Pipeline(store=self.store, archive=self.archive, partners=self.partners,
                            readers=[])
        self.received: list[Any] = []
        self.endpoint = As2Endpoint(self.settings, self.partners, pipeline, self.store,
                                    self.archive, SecurityLog(self.store),
                                    on_received=self.received.extend)
        self.http = HttpServer(build_app(endpoints={"/as2": self.endpoint}),
                               port=0).start_in_thread()
        self.url = f"{self.http.url}/as2"
        self.mdns = AsyncMdnSender(self.settings, self.store, self.archive)

    def payloads(self) -> list[bytes]:
        out = []
        for receipt in self.received:
            t = self.store.get_transmission(receipt.transmission_id)
            out.append(self.archive.get(t.sha256))
        return out

    def close(self) -> None:
        self.http.stop()
        self.store.close()


@pytest.fixture
def them(tmp_path) -> Iterator[Callable[..., TheirGateway]]:
    made: list[TheirGateway] = []

    def make(**profile: Any) -> TheirGateway:
        made.append(TheirGateway(tmp_path / f"them{len(made)}", **profile))
        return made[-1]

    yield make
    for g in made:
        g.close()


def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_edigw_partner_sync_mdn_delivered(us, them):
    partner = them()
    us.use(partner_profile(partner.url, compress=True))
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 1

    assert partner.payloads() == [DOCUMENT]
    row = us.row(oid)
    assert row.status == OutboundStatus.DELIVERED
    assert row.receipt.startswith("processed; MIC ok ") and row.receipt.endswith(
        "signed MDN verified")
    (record,) = partner.endpoint.records.recent()
    assert record.message_id == row.remote_id and record.mic.startswith(
        row.receipt.split()[3])


def test_edigw_partner_async_mdn_comes_back_and_makes_it_delivered(us, them):
    partner = them()
    us.use(partner_profile(partner.url, mdn="async"))
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 1
    row = us.row(oid)
    assert row.status == OutboundStatus.SENT
    assert "mic=" in row.receipt
    assert us.store.get_transmission(row.transmission_id).status == TransmissionStatus.SENT

    assert partner.mdns.deliver_due() == 1  # the partner posts its MDN to our endpoint

    row = us.row(oid)
    assert row.status == OutboundStatus.DELIVERED, row.receipt
    assert row.receipt.startswith("processed; MIC ok ")
    assert us.store.get_transmission(row.transmission_id).status == \
        TransmissionStatus.DELIVERED
    assert partner.payloads() == [DOCUMENT]
    # The same MDN again (a partner retrying): nothing changes.
    (record,) = partner.endpoint.records.recent()
    assert partner.endpoint.records.find(US, PARTNER, row.remote_id) is not None
    assert record.mdn_state == "sent"


def test_openssl_partner_async_mdn_posted_to_our_endpoint_makes_it_delivered(
        us, openssl_partner):
    us.use(partner_profile(openssl_partner.url, mdn="async"))
    oid = us.queue()
    assert us.dispatcher.deliver_pending() == 1
    assert us.row(oid).status == OutboundStatus.SENT
    ((url, headers, body),) = openssl_partner.async_mdns
    assert url == us.settings.receipt_url

    reply = httpx.post(url, content=body, headers=headers, timeout=10)

    assert reply.status_code == 200, reply.text
    row = us.row(oid)
    assert row.status == OutboundStatus.DELIVERED
    mic = openssl_partner.received[0]["mic"]
    assert row.receipt == f"processed; MIC ok {mic}, sha256; signed MDN verified"
    # The partner posting it again changes nothing.
    again = httpx.post(url, content=body, headers=headers, timeout=10)
    assert again.status_code == 200 and "already recorded" in again.text
    assert us.row(oid).status == OutboundStatus.DELIVERED


@pytest.mark.parametrize("case", ["negative", "other-mic"])
def test_openssl_partner_async_negative_or_wrong_mic_fails_the_row(us, openssl_partner, case):
    us.use(partner_profile(openssl_partner.url, mdn="async"))
    if case == "negative":
        openssl_partner.disposition = "processed/error: decryption-failed"
    else:
        openssl_partner.mic = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    oid = us.queue()
    us.dispatcher.deliver_pending()
    ((url, headers, body),) = openssl_partner.async_mdns

    assert httpx.post(url, content=body, headers=headers, timeout=10).status_code == 200

    row = us.row(oid)
    assert row.status == OutboundStatus.FAILED
    expected = ("processed/error: decryption-failed" if case == "negative"
                else f"processed; MIC returned {openssl_partner.mic}, sha256; MIC mismatch")
    assert row.receipt.startswith(expected), row.receipt
    transmission = us.store.get_transmission(row.transmission_id)
    assert transmission.status == TransmissionStatus.FAILED and transmission.stage == "receipt"


def test_edigw_partner_refusing_at_once_while_async_was_asked_fails_the_row(us, them):
    """The partner requires encryption; we send signed only. It cannot trust the sender of
    an unencrypted message, so it answers its negative MDN in the HTTP reply although an
    asynchronous one was asked: the row fails at once with the disposition."""
    partner = them(require_encryption=True)
    us.use(partner_profile(partner.url, mdn="async", encrypt=False))
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 0

    row = us.row(oid)
    assert row.status == OutboundStatus.FAILED and row.attempts == 1
    assert "processed/error: insufficient-message-security" in row.last_error
    assert partner.payloads() == []


def test_edigw_partner_unknown_to_it_refuses_with_negative_mdn(us, them):
    """The partner's gateway does not know our AS2 id: its (unsigned) negative MDN fails the
    row at once with the disposition."""
    partner = them(as2_id="someone-else")
    us.use(partner_profile(partner.url))
    oid = us.queue()

    assert us.dispatcher.deliver_pending() == 0

    row = us.row(oid)
    assert row.status == OutboundStatus.FAILED and row.attempts == 1
    assert "processed/error: unknown-trading-partner" in row.last_error


def test_forged_async_mdn_is_refused_and_changes_nothing(us, them):
    """An unsigned 'processed' MDN for a message we sent, posted by someone else, while a
    signed one was asked: 403, a security event, the row still SENT."""
    partner = them()
    us.use(partner_profile(partner.url, mdn="async"))
    oid = us.queue()
    us.dispatcher.deliver_pending()
    message_id = us.row(oid).remote_id
    boundary = "forged"
    body = (f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nok\r\n"
            f"--{boundary}\r\nContent-Type: message/disposition-notification\r\n\r\n"
            f"Original-Message-ID: <{message_id}>\r\n"
            f"Disposition: automatic-action/MDN-sent-automatically; processed\r\n\r\n"
            f"--{boundary}--\r\n").encode()
    reply = httpx.post(us.settings.receipt_url or "", content=body, headers={
        "Content-Type": f'multipart/report; report-type=disposition-notification; '
                        f'boundary="{boundary}"',
        "AS2-From": PARTNER, "AS2-To": US, "Message-ID": "<forged@x>"}, timeout=10)
    assert reply.status_code == 403
    assert us.row(oid).status == OutboundStatus.SENT
    events = SecurityLog(us.store).recent(channel="as2")
    assert events and events[0].kind == "insufficient-security"


def test_signed_mdn_for_a_message_we_never_sent_is_refused(us, openssl_partner, tmp_path):
    """A well-signed MDN from the partner naming a Message-ID we did not send it: 404 and a
    security event; nothing recorded."""
    _status, headers, body = openssl_partner.mdn("never-sent@edigw", {"as2-from": US},
                                                 "AAAA", "sha256", tmp_path)
    reply = httpx.post(us.settings.receipt_url or "", content=body, headers=headers,
                       timeout=10)
    assert reply.status_code == 404
    events = SecurityLog(us.store).recent(channel="as2")
    assert events and events[0].kind == "unexpected-mdn"
    assert "never-sent@edigw" in (events[0].detail or "")


def test_throughput_sync_mdn(us, them, record_property):
    """Deliveries per second, signed + encrypted with a signed synchronous MDN, to edigw's
    endpoint on this machine (measured once; not a limit)."""
    partner = them()
    us.use(partner_profile(partner.url))
    n = 30
    for i in range(n):
        us.queue(DOCUMENT + str(i).encode(), f"ordrsp-{i}.edi")
    started = time.perf_counter()
    assert us.dispatcher.deliver_pending() == n
    rate = n / (time.perf_counter() - started)
    record_property("as2_sync_deliveries_per_second", round(rate, 1))
    print(f"\nAS2 (sync signed MDN): {rate:.1f} deliveries/s ({n} messages)")
    assert len(partner.payloads()) == n
