"""Every PRICAT file of the shared corpus, read and mapped, checked against its source.

Rows are chosen from ``MANIFEST.tsv`` by a ``document_type`` containing PRICAT, so a new row
is tested without a code change. Expected values come from plain string splits of the file
(no edigw code): the BGM number, the LIN count, and the first item's GTIN and first price.

Policies (decided here, on purpose):
- The bots SAP WP_PLU files price with ``PRI+NTP:…::SRP``; NTP is not a UNCL 5125 qualifier,
  so the price is kept with its code as sent (type_name "NTP") and one warning per message.
- Their NADs carry SAP client ids with agency 9 (MIDCLNT010): kept as party id, the GLN
  left empty with a warning.
- A non-EDIFACT PRICAT row (the CSV article list) is refused by the EDIFACT reader; the CSV
  reader of the XML/CSV issue will take it.
  Its test skips naming that reason; the canonical PriceList holds what it carries (a retail
  and a promotional price with their dates).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.formats.edifact import read_interchanges
from gateway.formats.mapping import MappingSet, map_message
from tests.conftest import ROOT, manifest_rows, require_corpus
from tests.corpus.plain import plain_messages

pytestmark = pytest.mark.corpus

ROWS = [r for r in manifest_rows() if "PRICAT" in r["document_type"].upper()]
EDIFACT = [r for r in ROWS if r["document_type"].upper().startswith(("EDIFACT", "EANCOM"))]
OTHER = [r for r in ROWS if r not in EDIFACT]


@pytest.fixture(scope="module")
def mappings() -> MappingSet:
    return MappingSet.load(ROOT / "mappings")


def test_corpus_lists_pricat_rows():
    """The manifest lists EDIFACT PRICAT rows."""
    require_corpus()
    assert EDIFACT, "no EDIFACT PRICAT row in the manifest"


# -- an independent reading of the source, with plain splits (no edigw code) ---------------

def _gs1_ok(code: str) -> bool:
    """GS1 mod-10 check digit, written out again here rather than imported."""
    if not (code.isdigit() and len(code) in (8, 12, 13, 14)):
        return False
    body = [int(c) for c in reversed(code[:-1])]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    return (10 - total % 10) % 10 == int(code[-1])


def _first_item(message: list[list[list[str]]]) -> tuple[str | None, str | None, str | None]:
    """(LIN item code, its 7143, first PRI 5118 of that item) of the message's first LIN."""
    code = kind = amount = None
    seen_lin = False
    for seg in message:
        tag = seg[0][0]
        if tag == "LIN":
            if seen_lin:
                break
            seen_lin = True
            item = seg[3] if len(seg) > 3 else [""]
            code, kind = item[0] or None, (item[1] if len(item) > 1 else None)
        elif seen_lin and tag == "PRI" and amount is None and len(seg[1]) > 1:
            amount = seg[1][1]
    return code, kind, amount


@pytest.mark.parametrize("row", EDIFACT, ids=lambda r: r["local_path"])
def test_pricat_file_maps_every_message(row, mappings):
    """Each UNH is one price list whose number, item count and first item match the file."""
    folder = require_corpus()
    data = (folder / row["local_path"]).read_bytes()
    interchanges = read_interchanges(data, filename=row["local_path"])
    lists = []
    for interchange in interchanges:
        assert interchange.error is None, interchange.error
        for message in interchange.messages:
            assert message.error is None, message.error
            mapped = map_message(mappings.find(message), interchange, message,
                                 partner_id="corpus", filename=row["local_path"])
            assert mapped.document_type == "price-list"
            lists.append(mapped.document)
    plain = plain_messages(data)
    assert plain is not None, "the corpus PRICAT files use no release character"
    assert len(lists) == len(plain) > 0
    for price_list, message in zip(lists, plain, strict=True):
        bgm = next(seg for seg in message if seg[0][0] == "BGM")
        assert price_list.price_list_number == bgm[2][0]
        assert price_list.source.message_ref == message[0][1][0]
        assert len(price_list.items) == sum(1 for seg in message if seg[0][0] == "LIN")
        code, kind, amount = _first_item(message)
        first = price_list.items[0]
        assert first.item_code == code and first.item_code_type == kind
        gtin_kind = kind in ("EN", "SRV", "UP")
        assert first.gtin == (code if gtin_kind and code and _gs1_ok(code) else None)
        if amount is None:
            assert first.prices == []
        else:
            assert first.prices[0].amount == Decimal(amount.replace(",", "."))


@pytest.mark.parametrize("row", OTHER, ids=lambda r: r["local_path"])
def test_non_edifact_pricat_row_is_refused_by_the_edifact_reader(row):
    """A CSV price list is not EDIFACT: the EDIFACT reader refuses it at its first line (the
    CSV reader of the XML/CSV issue will take it)."""
    from gateway.core.errors import EdifactSyntaxError
    from gateway.formats.edifact import read_interchanges

    folder = require_corpus()
    data = (folder / row["local_path"]).read_bytes()
    assert b"UNH+" not in data[:200] and b"UNB+" not in data[:200]
    with pytest.raises(EdifactSyntaxError, match="not EDIFACT") as info:
        read_interchanges(data, filename=row["local_path"])
    assert info.value.position is not None and info.value.position.line == 1
