"""Reading mails and zips without trusting them (sans-IO parts of the e-mail channel)."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from types import SimpleNamespace

from gateway.channels.email.mailer import Mailer
from gateway.channels.email.mime import MailLimits, read_mail
from gateway.channels.email.names import kind_of, safe_name
from gateway.channels.email.replies import PendingReply, ReceivedItem, compose
from gateway.channels.email.settings import SmtpSettings
from gateway.channels.email.zips import ZipLimits, open_zip
from gateway.config import Identifiers, Partner, PartnerEmail

EDI = b"UNA:+.? 'UNB+UNOC:3+1:14+2:14+240101:1200+R1'UNH+1+ORDERS:D:96A:UN:EAN008'"
LIMITS = ZipLimits(max_total=1_000_000, max_ratio=100, max_entries=10, max_entry=500_000)


def _zip(*entries: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _mail(*attachments: tuple[str, bytes, str]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "A Buyer <Buyer@Acme.TEST>"
    msg["Subject"] = "orders"
    msg.set_content("see attached")
    for name, data, ctype in attachments:
        main, sub = ctype.split("/")
        msg.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return msg.as_bytes()


def test_safe_name_reduces_paths_and_says_why():
    """Traversal, absolute and drive paths become a base name with the reason noted."""
    assert safe_name("../../etc/passwd", "x").name == "passwd"
    assert "path traversal" in safe_name("../../etc/passwd", "x").unsafe
    assert safe_name("/abs/order.edi", "x").unsafe.endswith("(absolute path)")
    assert safe_name("C:\\in\\order.edi", "x").name == "order.edi"
    assert safe_name("order.edi", "x") == safe_name("order.edi", "y")
    assert safe_name("order.edi", "x").unsafe is None
    assert safe_name("..", "fallback").name == "fallback"
    assert safe_name("a\x00b.edi", "x").name == "a_b.edi"


def test_kind_by_content_first_and_zip_only_when_named_so():
    """A .txt holding UNB is EDIFACT; an office file (a zip inside) is not opened."""
    assert kind_of(EDI, "order.txt") == "edifact"
    assert kind_of(b"%PDF-1.7", "inv.pdf") == "pdf"
    assert kind_of(b"a;b\n1;2\n", "orders.csv") == "csv"
    assert kind_of(_zip(("a", b"x")), "orders.zip") == "zip"
    assert kind_of(_zip(("word/document.xml", b"<x/>")), "letter.docx") is None
    assert kind_of(b"\x89PNG", "logo.png", "image/png") is None


def test_zip_entries_are_taken_one_level_deep():
    """Each document entry is taken; a nested zip and a picture are skipped with a reason."""
    out = open_zip(_zip(("a.edi", EDI), ("dir/b.xml", b"<o/>"), ("inner.zip", _zip(("c", EDI))),
                        ("logo.png", b"\x89PNG")), "x.zip", LIMITS)
    assert out.refused is None
    assert [(e.position, e.name) for e in out.entries] == [(1, "a.edi"), (2, "b.xml")]
    assert any("one level only" in s for s in out.skipped)
    assert any("logo.png" in s for s in out.skipped)


def test_zip_bomb_is_refused_on_the_bytes_produced():
    """Ratio, total and count limits are checked while decompressing, the zip refused whole."""
    bomb = _zip(("a.edi", EDI), ("b.edi", b"0" * 2_000_000))
    out = open_zip(bomb, "bomb.zip", LIMITS)
    assert out.entries == [] and "zip bomb" in out.refused
    total = open_zip(_zip(*[(f"{i}.edi", bytes(range(256)) * 1000) for i in range(5)]), "t.zip",
                     ZipLimits(max_total=600_000, max_ratio=1000, max_entries=10,
                               max_entry=500_000))
    assert "total limit" in total.refused
    many = open_zip(_zip(*[(f"{i}.edi", EDI) for i in range(11)]), "m.zip", LIMITS)
    assert "11 entries" in many.refused
    assert "cannot be opened" in open_zip(b"PK\x03\x04broken", "b.zip", LIMITS).refused


def test_zip_with_lying_sizes_is_still_measured():
    """A central directory declaring tiny sizes does not let a large entry through."""
    data = bytearray(_zip(("big.edi", b"0" * 1_000_000)))
    # Patch the uncompressed size in the local header and central directory to 10 bytes.
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(sig)
        data[at + offset:at + offset + 4] = (10).to_bytes(4, "little")
    out = open_zip(bytes(data), "liar.zip", LIMITS)
    assert out.entries == []
    assert out.refused or out.skipped  # refused as a bomb, or unreadable: never taken whole


def test_read_mail_finds_attachments_and_refuses_oversize():
    """Attachments become documents; one over the size limit is refused with its size."""
    raw = _mail(("a.edi", EDI, "application/edifact"), ("big.edi", EDI * 100, "application/edifact"),
                ("logo.png", b"\x89PNG", "image/png"))
    content = read_mail(raw, MailLimits(max_attachment_bytes=1000))
    assert content.sender == "buyer@acme.test" and content.subject == "orders"
    assert [(a.index, a.filename) for a in content.attachments] == [("2", "a.edi")]
    assert "over the 1000-byte attachment limit" in content.refused[0]
    assert "logo.png" in content.skipped[0]
    assert content.problem.startswith("refused: big.edi")


def test_mail_with_nothing_usable_says_so_and_a_body_edifact_counts():
    """No attachment: the problem names what was there; EDIFACT pasted in the body is taken."""
    content = read_mail(_mail(("logo.png", b"\x89PNG", "image/png")), MailLimits())
    assert content.attachments == [] and "no usable attachment" in content.problem
    msg = EmailMessage()
    msg["From"] = "b@acme.test"
    msg.set_content(EDI.decode())
    body = read_mail(msg.as_bytes(), MailLimits())
    assert [a.filename for a in body.attachments] == ["body-1.edi"] and body.problem is None


def test_malformed_mail_never_raises():
    """Garbage in, a content with a problem out."""
    content = read_mail(b"\x00\xff garbage \r\n\r\n--", MailLimits())
    assert content.sender is None and content.problem


def _partner(ack: bool, notices: bool = True) -> Partner:
    return Partner(id="acme", name="ACME", identifiers=Identifiers(email=["b@acme.test"]),
                   email=PartnerEmail(acknowledgements=ack, failure_notices=notices))


def _row(status, **kw):
    base = dict(status=status, stage=None, reason=None, document_count=1, duplicate_of=None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_reply_lists_files_and_documents_or_only_failures():
    """Acknowledgement lists names, sizes and documents; a failure notice names stage and
    reason; nothing is sent when nothing is asked."""
    mailer = Mailer(SmtpSettings(sender="edigw@w.test"))
    items = [ReceivedItem("t1", "a.edi", 120), ReceivedItem("t2", "b.edi", 80)]
    doc = SimpleNamespace(doc_type="order", business_number="PO-1", status="PENDING", reason=None)
    rows = [_row("PROCESSED"), _row("FAILED", stage="parse", reason="segment 3: bad")]
    pending = PendingReply(key="k", partner=_partner(True), to=["b@acme.test"], subject="S",
                           message_id="<m@x>", items=items)
    ack = compose(pending, rows, [[doc], []], mailer)
    body = ack.get_content()
    assert ack["Subject"] == "Received with problems: S" and ack["In-Reply-To"] == "<m@x>"
    assert "a.edi (120 bytes)" in body and "order PO-1: accepted" in body
    assert "b.edi: failed at stage parse: segment 3: bad" in body
    pending.partner = _partner(False)
    notice = compose(pending, rows, [[doc], []], mailer)
    assert notice["Subject"] == "Not processed: S"
    assert compose(pending, [_row("PROCESSED"), _row("PROCESSED")], [[doc], []], mailer) is None
    pending.partner = _partner(False, notices=False)
    assert compose(pending, rows, [[doc], []], mailer) is None
