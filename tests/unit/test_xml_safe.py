"""Hardened XML parsing: hostile documents are refused with a reason and nothing is fetched."""

from __future__ import annotations

import codecs
import http.server
import threading
from pathlib import Path

import pytest

from gateway.config import Partner
from gateway.formats.mapping import MappingSet
from gateway.formats.xml.reader import XmlReader
from gateway.formats.xml.safe import ParseLimits, XmlError, decode, parse_xml

REPO = Path(__file__).resolve().parents[2]


class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # the name http.server calls
        type(self).requests.append(self.path)
        body = b'<!ENTITY leaked "fetched">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_trap():
    """An HTTP server on localhost that records every request it gets."""
    _Recorder.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.requests
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-CONTENT")
    return path


def refused(data: bytes, **kwargs) -> XmlError:
    with pytest.raises(XmlError) as info:
        parse_xml(data, **kwargs)
    assert info.value.stage == "parse"
    return info.value


def test_xxe_to_a_local_file_is_refused_and_the_file_is_not_read(secret_file):
    """An external entity naming a local file is refused at the DOCTYPE, line and column."""
    data = (f'<?xml version="1.0"?>\n<!DOCTYPE order [\n  <!ENTITY x SYSTEM '
            f'"file://{secret_file}">\n]>\n<order>&x;</order>').encode()
    error = refused(data)
    assert "entity declarations" in error.reason
    assert (error.position.line, error.position.column) == (2, 1)
    assert "TOP-SECRET" not in str(error)


def test_xxe_to_http_is_refused_and_nothing_is_fetched(http_trap):
    """An external entity on http:// is refused; the trap server receives no request."""
    url, requests = http_trap
    data = (f'<!DOCTYPE order [<!ENTITY x SYSTEM "{url}/xxe">]><order>&x;</order>').encode()
    refused(data)
    assert requests == []


def test_external_dtd_and_parameter_entities_are_refused_without_a_fetch(http_trap):
    """An external DTD subset and a parameter entity pointing at a server are never loaded."""
    url, requests = http_trap
    refused(f'<!DOCTYPE order SYSTEM "{url}/order.dtd"><order/>'.encode())
    refused(f'<!DOCTYPE order [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]><order/>'.encode())
    refused(f'<!DOCTYPE order PUBLIC "-//X//DTD X//EN" "{url}/x.dtd"><order/>'.encode())
    assert requests == []


def test_billion_laughs_is_refused_quickly():
    """Nested entity expansion is refused at its DOCTYPE before anything is expanded."""
    lol = ['<!ENTITY lol "lol">'] + [
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">'
        for i in range(1, 10)]
    data = ('<?xml version="1.0"?><!DOCTYPE lolz [' + "".join(lol) + ']><lolz>&lol9;</lolz>')
    error = refused(data.encode())
    assert "billion laughs" in error.reason


def test_quadratic_blowup_is_refused():
    """One big entity referenced many times (no nesting) is refused too."""
    data = ('<!DOCTYPE kaboom [<!ENTITY a "' + "x" * 50_000 + '">]><kaboom>'
            + "&a;" * 10_000 + "</kaboom>")
    assert "entity" in refused(data.encode()).reason


def test_a_doctype_after_comments_and_processing_instructions_is_still_found():
    """The prolog is walked item by item, so a DOCTYPE behind a comment is still refused."""
    data = b'<?xml version="1.0"?>\n<!-- hello -->\n<?pi x?>\n<!DOCTYPE a><a/>'
    error = refused(data)
    assert error.position.line == 4


def test_a_doctype_in_utf16_or_utf7_is_refused_as_well():
    """The DOCTYPE check runs on decoded text, whatever the encoding hides it in."""
    text = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'
    refused(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    utf7 = b'<?xml version="1.0" encoding="UTF-7"?>+ADwAIQ-DOCTYPE a+AD4APA-a/+AD4-'
    assert "DOCTYPE" in refused(utf7).reason


def test_an_undeclared_entity_is_not_well_formed():
    """Without a DOCTYPE an entity reference is an error, with its line and column."""
    error = refused(b"<a>\n  &unknown;</a>")
    assert "unknown" in error.reason
    assert error.position.line == 2


def test_too_deep_documents_are_refused_with_the_line():
    """Nesting past the depth limit is refused naming the limit and where it was crossed."""
    data = "<a>\n" + "<b>" * 70 + "</b>" * 70 + "</a>"
    error = refused(data.encode())
    assert "deeper than the limit of 64" in error.reason
    assert error.position.line == 2
    refused(("<a>" * 20 + "</a>" * 20).encode(), limits=ParseLimits(max_depth=10))
    refused(("<a>" * 5000 + "</a>" * 5000).encode())  # past libxml2's own limit too


def test_too_big_documents_are_refused_before_parsing():
    """The size limit is checked on the bytes, before any parsing."""
    error = refused(b"<a>" + b"x" * 2000 + b"</a>", limits=ParseLimits(max_bytes=1000))
    assert "more than the limit of 1000 bytes" in error.reason


def test_encodings_come_from_the_bom_or_the_declaration():
    """UTF-8 with BOM, ISO-8859-1 and UTF-16 (LE and BE, with BOM) read the same text."""
    text = '<?xml version="1.0" encoding="{}"?><a>Crème brûlée €</a>'
    samples = [
        codecs.BOM_UTF8 + text.format("UTF-8").encode("utf-8"),
        codecs.BOM_UTF16_LE + text.format("UTF-16").encode("utf-16-le"),
        codecs.BOM_UTF16_BE + text.format("UTF-16").encode("utf-16-be"),
        text.format("windows-1252").encode("cp1252"),
    ]
    for data in samples:
        assert parse_xml(data).getroot().text == "Crème brûlée €"
    latin1 = '<?xml version="1.0" encoding="ISO-8859-1"?><a>Miljömärkning</a>'
    assert parse_xml(latin1.encode("latin-1")).getroot().text == "Miljömärkning"
    assert parse_xml("<a>déjà</a>".encode()).getroot().text == "déjà"  # no declaration: UTF-8


def test_bytes_that_do_not_decode_name_their_line():
    """Latin-1 bytes in a document declared (or defaulting to) UTF-8 are refused."""
    error = refused(b"<a>\n<b>caf\xe9</b></a>")
    assert "not valid utf-8" in error.reason
    assert error.position.line == 2
    assert "does not know" in refused(b'<?xml version="1.0" encoding="x-nope"?><a/>').reason


def test_decode_keeps_columns_of_the_first_line():
    """The declaration's encoding is blanked, not removed, so line 1 columns stay right."""
    error = refused(b'<?xml version="1.0" encoding="ISO-8859-1"?><a><b></a>')
    assert error.position.line == 1 and error.position.column > 40
    assert decode(b"\xef\xbb\xbf<a/>") == "<a/>"


def test_a_lone_surrogate_is_refused_not_crashed_on():
    """UTF-7 can spell a lone surrogate, which no XML text may hold: XmlError, with a place."""
    error = refused(b'<?xml version="1.0" encoding="UTF-7"?><a>+2AA-</a>')
    assert "surrogate" in error.reason and error.position.line == 1


def test_not_xml_and_empty_payloads_are_refused():
    """Empty or non-XML bytes are an XmlError, not another exception."""
    for data in (b"", b"   ", b"UNB+UNOA:3", b"<a>", b"<a></b>", b"\x00\x01\x02"):
        refused(data)


def test_reader_never_fetches_schema_locations_or_xincludes(http_trap):
    """xsi:schemaLocation hints and XInclude elements in a UBL document are never followed."""
    url, requests = http_trap
    sample = (REPO / "mappings/xml/ubl-invoice.sample.xml").read_text(encoding="utf-8")
    hostile = sample.replace(
        'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">',
        'xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
        f'"urn:oasis:names:specification:ubl:schema:xsd:Invoice-2 {url}/Invoice.xsd">'
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}/inc.xml"/>', 1)
    reader = XmlReader(MappingSet.load(REPO / "mappings"))
    payload = reader.parse(hostile.encode("utf-8"), filename="hostile.xml")
    results = payload.documents(partner=Partner(id="acme", name="Acme"),
                                transmission_id=None, filename="hostile.xml")
    assert results[0].stage == "validate"  # the stray xi:include is not UBL
    assert requests == []
