"""AS2 messages built without pyas2lib, with the ``openssl`` command line (and asn1crypto for
compression), and MDNs checked the same way: the gateway's AS2 endpoint is tested against
software nobody here wrote.

    sender = Party("partner-as2", key=..., cert=..., passin="pass:test")
    msg = build_message(payload, sender=sender, recipient_cert=our_cert, as2_to="edigw",
                        sign="sha256", encrypt="aes256")
    reply = httpx.post(url, content=msg.body, headers=msg.headers)
    mdn = read_mdn(reply.headers["content-type"], reply.content, signer_cert=our_cert)
    assert mdn.disposition_type == "processed" and mdn.mic == msg.mic

Layers, innermost first (RFC 4130 §3, RFC 5402): the payload as a MIME entity
(``Content-Transfer-Encoding: binary``, CRLF headers); then optionally compressed
(CMS CompressedData, RFC 3274); signed (``openssl cms -sign``, detached, multipart/signed);
encrypted (``openssl cms -encrypt``, application/pkcs7-mime enveloped-data). The outermost
entity's headers become HTTP headers and its content the HTTP body.

This machine's OpenSSL 3.0 is built without zlib: ``openssl cms -compress`` answers
"unsupported compression algorithm", so CompressedData is built with asn1crypto and
Python's ``zlib`` (RFC 3274: ZLIB, RFC 1950), still independent of pyas2lib.

The MIC (RFC 4130 §7.3.1) is computed here from the bytes that were signed: for a signed
message, over the MIME headers and content of the signed entity (canonical: it is built with
CRLF headers and signed with ``-binary``, so the bytes sent are the canonical form); for an
encrypted unsigned message, over the MIME entity that was encrypted; for neither, over the
content alone.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import re
import subprocess
import tempfile
import uuid
import zlib
from pathlib import Path

from asn1crypto import cms

#: openssl cipher options, with the block size that tells where a flipped byte lands.
CIPHERS = {"des3": 8, "aes128": 16, "aes192": 16, "aes256": 16}
#: ``micalg`` parameter names (RFC 5751 §3.4.3.2).
MICALG = {"sha1": "sha1", "sha224": "sha-224", "sha256": "sha-256", "sha384": "sha-384",
          "sha512": "sha-512"}


class OpensslError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Party:
    """One side's AS2 id, with its certificate and (to sign or decrypt) private key.
    ``passin`` is openssl's -passin argument (``pass:test``) for an encrypted key."""

    as2_id: str
    cert: Path
    key: Path | None = None
    passin: str | None = None


@dataclasses.dataclass
class As2Message:
    """What to POST: ``headers`` and ``body``; the MIC the MDN must return (None when the
    message is neither signed nor encrypted... see ``mic_content``)."""

    message_id: str  # without angle brackets
    headers: dict[str, str]
    body: bytes
    mic_alg: str
    mic_content: bytes  # the bytes the MIC is computed over (RFC 4130 §7.3.1)
    signed: bool
    encrypted: bool
    compressed: bool
    block_size: int | None = None  # cipher block size, when encrypted
    signed_content: bytes | None = None  # the signed entity, when signed

    @property
    def mic(self) -> str:
        return mic_of(self.mic_content, self.mic_alg)


@dataclasses.dataclass
class MdnReport:
    """An MDN as read here: its fields, and whether its signature verified."""

    signed: bool
    fields: dict[str, str]  # lower-case field name -> unfolded value
    text: str  # the human-readable part

    @property
    def disposition(self) -> str:
        return self.fields.get("disposition", "")

    @property
    def disposition_type(self) -> str:
        """``processed`` or ``failed`` …, without modifier."""
        value = self.disposition.split(";", 1)[-1].strip()
        return value.split("/", 1)[0].strip().lower()

    @property
    def modifier(self) -> str | None:
        """``error: decryption-failed`` -> ``decryption-failed``; None when processed."""
        value = self.disposition.split(";", 1)[-1]
        if "/" not in value:
            return None
        mod = value.split("/", 1)[1]
        return mod.split(":", 1)[-1].strip().lower() if ":" in mod else mod.strip().lower()

    @property
    def mic(self) -> str | None:
        value = self.fields.get("received-content-mic")
        return value.split(",")[0].strip() if value else None

    @property
    def mic_alg(self) -> str | None:
        value = self.fields.get("received-content-mic")
        return value.split(",")[1].strip().lower() if value and "," in value else None

    @property
    def original_message_id(self) -> str | None:
        value = self.fields.get("original-message-id")
        return value.strip().strip("<>") if value else None


def mic_of(content: bytes, alg: str) -> str:
    """base64 digest of ``content`` (``alg``: sha256 or sha-256 …)."""
    return base64.b64encode(hashlib.new(alg.replace("-", "").lower(), content).digest()).decode()


def openssl(*args: str, data: bytes | None = None) -> bytes:
    """Run ``openssl ARGS`` with ``data`` on stdin; its stdout, or ``OpensslError``."""
    proc = subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise OpensslError(f"openssl {' '.join(args[:2])} failed: "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def openssl_compresses() -> bool:
    """Whether this openssl can ``cms -compress`` (needs zlib support)."""
    try:
        openssl("cms", "-compress", "-outform", "DER", data=b"x")
    except OpensslError:
        return False
    return True


# -- building ---------------------------------------------------------------------------------

def mime_entity(payload: bytes, *, content_type: str = "application/edifact",
                filename: str | None = "order.edi") -> bytes:
    """The payload as a binary MIME entity with CRLF headers (its canonical form)."""
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: binary\r\n"
    if filename:
        head += f'Content-Disposition: attachment; filename="{filename}"\r\n'
    return head.encode() + b"\r\n" + payload


def compress(entity: bytes) -> bytes:
    """``entity`` as a CMS CompressedData entity (RFC 3274, ZLIB), MIME headers included."""
    info = cms.ContentInfo({
        "content_type": "compressed_data",
        "content": cms.CompressedData({
            "version": "v0",
            "compression_algorithm": {"algorithm": "zlib"},
            "encap_content_info": {"content_type": "data", "content": zlib.compress(entity)},
        }),
    })
    return (b"Content-Type: application/pkcs7-mime; smime-type=compressed-data; "
            b'name="smime.p7z"\r\nContent-Transfer-Encoding: binary\r\n'
            b'Content-Disposition: attachment; filename="smime.p7z"\r\n\r\n' + info.dump())


def sign(entity: bytes, signer: Party, md: str = "sha256") -> bytes:
    """A multipart/signed entity around ``entity`` with an ``openssl cms -sign`` detached
    signature (``-binary``: the bytes are signed as they are, CRLF headers included)."""
    if signer.key is None:
        raise ValueError("the signer needs a key")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "entity"
        src.write_bytes(entity)
        args = ["cms", "-sign", "-binary", "-md", md, "-in", str(src), "-signer",
                str(signer.cert), "-inkey", str(signer.key), "-outform", "DER"]
        if signer.passin:
            args += ["-passin", signer.passin]
        signature = openssl(*args)
    boundary = f"----=_edigw_test_{uuid.uuid4().hex}"
    sig_b64 = base64.encodebytes(signature).replace(b"\n", b"\r\n")
    head = (f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            f'micalg={MICALG[md]}; boundary="{boundary}"\r\n\r\n').encode()
    b = boundary.encode()
    return (head + b"--" + b + b"\r\n" + entity + b"\r\n--" + b + b"\r\n"
            b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
            b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n'
            + sig_b64 + b"\r\n--" + b + b"--\r\n")


def encrypt(entity: bytes, recipient_cert: Path, cipher: str = "aes256", *,
            oaep: bool = False) -> bytes:
    """``entity`` in an application/pkcs7-mime enveloped-data entity (``openssl cms
    -encrypt``, RSA PKCS#1 v1.5 key transport, or RSA-OAEP with ``oaep``)."""
    if cipher not in CIPHERS:
        raise ValueError(f"cipher {cipher!r} not one of {sorted(CIPHERS)}")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "entity"
        src.write_bytes(entity)
        args = ["cms", "-encrypt", "-binary", f"-{cipher}", "-in", str(src), "-outform", "DER",
                "-recip", str(recipient_cert)]
        if oaep:
            args += ["-keyopt", "rsa_padding_mode:oaep"]
        der = openssl(*args)
    return (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; "
            b'name="smime.p7m"\r\nContent-Transfer-Encoding: binary\r\n'
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n' + der)


def split_entity(entity: bytes) -> tuple[dict[str, str], bytes]:
    """(headers, content) of a MIME entity built here (CRLF, no folded headers)."""
    head, _, content = entity.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode().split("\r\n"):
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers, content


def build_message(payload: bytes, *, sender: Party, recipient_cert: Path, as2_to: str,
                  sign_md: str | None = "sha256", encrypt_cipher: str | None = "aes256",
                  compress_first: bool = False, oaep: bool = False,
                  content_type: str = "application/edifact", filename: str | None = "order.edi",
                  mdn: str | None = "signed", mic_alg: str | None = None,
                  receipt_url: str | None = None, message_id: str | None = None) -> As2Message:
    """An AS2 message from ``sender`` to ``as2_to``: ``payload`` compressed (when
    ``compress_first``), signed with ``sign_md`` and encrypted with ``encrypt_cipher`` (each
    None to leave out). ``mdn``: "signed" asks a signed MDN (with ``mic_alg``, by default the
    signing digest or sha256), "unsigned" an unsigned one, None none; ``receipt_url`` makes it
    asynchronous."""
    entity = mime_entity(payload, content_type=content_type, filename=filename)
    mic_content = payload  # neither signed nor encrypted: the content alone
    if compress_first:
        entity = compress(entity)
    signed_content = None
    if sign_md:
        signed_content = entity
        mic_content = entity
        entity = sign(entity, sender, sign_md)
    if encrypt_cipher:
        if not sign_md:
            mic_content = entity  # the decrypted MIME header and content
        entity = encrypt(entity, recipient_cert, encrypt_cipher, oaep=oaep)
    mime_headers, body = split_entity(entity)
    message_id = message_id or f"{uuid.uuid4().hex}@{sender.as2_id.replace(' ', '_')}"
    headers = {
        "AS2-Version": "1.2",
        "AS2-From": sender.as2_id,
        "AS2-To": as2_to,
        "Message-ID": f"<{message_id}>",
        "Subject": "EDI order",
        "Date": email.utils.formatdate(usegmt=True),
        "MIME-Version": "1.0",
        "Content-Type": mime_headers["Content-Type"],
    }
    if "Content-Disposition" in mime_headers:
        headers["Content-Disposition"] = mime_headers["Content-Disposition"]
    alg = (mic_alg or sign_md or "sha256").lower()
    if mdn:
        headers["Disposition-Notification-To"] = "edi@partner.example"
        if mdn == "signed":
            headers["Disposition-Notification-Options"] = (
                "signed-receipt-protocol=optional, pkcs7-signature; "
                f"signed-receipt-micalg=optional, {alg}")
        if receipt_url:
            headers["Receipt-Delivery-Option"] = receipt_url
    return As2Message(message_id=message_id, headers=headers, body=body, mic_alg=alg,
                      mic_content=mic_content, signed=sign_md is not None,
                      encrypted=encrypt_cipher is not None, compressed=compress_first,
                      block_size=CIPHERS.get(encrypt_cipher or ""),
                      signed_content=signed_content)


# -- tampering (each copy differs from the message by one bit, where it says) ------------------

def flip_in_signature(msg: As2Message) -> As2Message:
    """A signed, unencrypted message whose RSA signature value has one bit changed (the
    signature is the last field of the SignerInfo, the last thing in the SignedData)."""
    if not msg.signed or msg.encrypted:
        raise ValueError("needs a signed, unencrypted message")
    m = re.search(rb"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"
                  rb"([A-Za-z0-9+/=\r\n]+?)\r\n--", msg.body)
    assert m is not None, "signature part not found"
    der = bytearray(base64.b64decode(m.group(1)))
    der[-10] ^= 0x01
    b64 = base64.encodebytes(bytes(der)).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    body = msg.body[:m.start(1)] + b64 + msg.body[m.end(1):]
    return _renamed(dataclasses.replace(msg, body=body))


def flip_in_signed_content(msg: As2Message) -> As2Message:
    """A signed, unencrypted message whose signed payload has one byte changed."""
    if not msg.signed or msg.encrypted or msg.signed_content is None:
        raise ValueError("needs a signed, unencrypted message")
    at = msg.body.index(msg.signed_content) + len(msg.signed_content) - 3
    body = bytearray(msg.body)
    body[at] ^= 0x01
    return _renamed(dataclasses.replace(msg, body=bytes(body)))


def flip_in_encrypted_content(msg: As2Message) -> As2Message:
    """An encrypted message with one bit changed in the next-to-last cipher block: CBC
    decryption then changes the last block's padding byte to an impossible value
    (XOR 0x80), so the padding check fails every time, not 255 times in 256."""
    if not msg.encrypted or msg.block_size is None:
        raise ValueError("needs an encrypted message")
    body = bytearray(msg.body)
    body[-1 - msg.block_size] ^= 0x80
    return _renamed(dataclasses.replace(msg, body=bytes(body)))


def _renamed(msg: As2Message) -> As2Message:
    """The copy under a Message-ID of its own (never taken for the original's repeat)."""
    message_id = f"tampered-{uuid.uuid4().hex}@test"
    headers = dict(msg.headers)
    headers["Message-ID"] = f"<{message_id}>"
    return dataclasses.replace(msg, headers=headers, message_id=message_id)


# -- reading MDNs -----------------------------------------------------------------------------

def read_mdn(content_type: str, body: bytes, *, signer_cert: Path | None = None) -> MdnReport:
    """Read an MDN (HTTP Content-Type and body). A multipart/signed one is verified with
    ``openssl cms -verify`` against ``signer_cert`` only (the signer must hold that exact
    certificate; a self-signed one is its own trust anchor): ``OpensslError`` if it does not
    verify. (Not ``-binary``: with it, openssl's multipart split keeps the lines' own ends
    and an MDN signed in canonical CRLF form fails its digest.)"""
    entity = f"Content-Type: {content_type}\r\n\r\n".encode() + body
    signed = content_type.split(";")[0].strip().lower() == "multipart/signed"
    if signed:
        if signer_cert is None:
            raise ValueError("a signed MDN needs the signer's certificate to be verified")
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "mdn.eml"
            src.write_bytes(entity)
            report = openssl("cms", "-verify", "-inform", "SMIME", "-in", str(src),
                             "-certfile", str(signer_cert), "-nointern",
                             "-CAfile", str(signer_cert), "-partial_chain", "-purpose", "any")
    else:
        report = entity
    return _parse_report(signed, report)


def _parse_report(signed: bool, report: bytes) -> MdnReport:
    text = report.decode("utf-8", errors="replace")
    unfolded = re.sub(r"\r?\n[ \t]+", " ", text)
    fields: dict[str, str] = {}
    for name in ("Reporting-UA", "Original-Recipient", "Final-Recipient",
                 "Original-Message-ID", "Disposition", "Received-Content-MIC"):
        m = re.search(rf"^{name}:[ \t]*(.*?)\r?$", unfolded, re.IGNORECASE | re.MULTILINE)
        if m:
            fields[name.lower()] = m.group(1).strip()
    if "disposition" not in fields:
        raise ValueError("no Disposition field in the MDN")
    human = ""
    m = re.search(r"Content-Type: text/plain.*?\r?\n\r?\n(.*?)\r?\n--", text, re.DOTALL | re.I)
    if m:
        human = m.group(1).strip()
    return MdnReport(signed=signed, fields=fields, text=human)
