"""Property-based fuzzing of the readers (issue 13, "fuzzing of readers").

Each reader (parse, then documents for a plain partner) gets the repository's own samples
(``mappings/*/…sample…``, and SMS envelopes) mutated by byte flips, truncation, digit
inflation, repetition and splices, and must either return or raise ``PayloadError``: never
another exception, never past the time budget. The budget here is short (the whole file
well under a minute); ``EDIGW_FUZZ_EXAMPLES`` sets the examples per
reader for a longer campaign (docs/fuzzing.md).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gateway.config import DocumentSettings, Partner  # noqa: E402
from gateway.core.errors import PayloadError  # noqa: E402
from gateway.formats.csv import CsvReader  # noqa: E402
from gateway.formats.edifact.reader import EdifactReader  # noqa: E402
from gateway.formats.mapping import MappingSet  # noqa: E402
from gateway.formats.sms.envelope import SmsEnvelope  # noqa: E402
from gateway.formats.sms.reader import SmsReader  # noqa: E402
from gateway.formats.xml.reader import XmlReader  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("EDIGW_FUZZ_EXAMPLES", "60"))
#: Seconds one input may take through one reader (the samples are small; a mutation that
#: inflates one makes it at most a few MB).
BUDGET = 10.0
#: Derandomized in CI (the same inputs each run); ``EDIGW_FUZZ_SEED`` set: new ones each run.
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                derandomize="EDIGW_FUZZ_SEED" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

MAPPINGS = MappingSet.load(REPO / "mappings")
CSV_MAPPINGS = list(MAPPINGS.of_format("csv"))
ACME = Partner(id="acme", name="Acme")


def samples(folder: str, suffix: str) -> list[bytes]:
    found = sorted((REPO / "mappings" / folder).glob(f"*.sample.{suffix}"))
    assert found, f"no samples in mappings/{folder}"
    return [p.read_bytes() for p in found]


def sms_samples() -> list[bytes]:
    texts = ["ORDER 4012345000009\n3 x 4006381333931\n12 4006381333948",
             "CMD 12 x 4006381333931", "4006381333931 5\n4006381333948 2"]
    received = dt.datetime(2026, 11, 27, 16, 0, tzinfo=dt.UTC)
    return [SmsEnvelope(provider="twilio", message_id=f"SM{n}", sender="+33612345678",
                        recipient="+33700000000", received=received, text=text).to_bytes()
            for n, text in enumerate(texts)]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed after one to three mutations of the kinds the fuzz regressions came from."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "digits", "repeat", "splice", "delete",
                                     "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "digits":  # a number of thousands of digits where a count was
            while at < len(data) and not chr(data[at]).isdigit():
                at += 1
            data[at:at] = b"9" * draw(st.sampled_from([10, 19, 4301, 6000]))
        elif kind == "repeat":  # one piece repeated until the input is up to ~2 MB
            piece = bytes(data[at:at + draw(st.integers(1, 80))])
            times = draw(st.integers(2, 2_000_000 // max(1, len(piece))))
            data[at:at] = piece * times
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 20))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


def reads_or_refuses(read: Callable[[bytes], object], data: bytes) -> None:
    """The property: ``read`` returns or raises PayloadError, within ``BUDGET`` seconds."""
    start = time.process_time()
    try:
        read(data)
    except PayloadError:
        pass
    spent = time.process_time() - start
    assert spent < BUDGET, f"{spent:.1f} s of CPU for {len(data)} bytes"


def read_edifact(data: bytes) -> None:
    payload = EdifactReader(MAPPINGS).parse(data, filename="fuzz.edi")
    payload.summary()
    payload.documents(partner=ACME, transmission_id="t1", filename="fuzz.edi")


def read_edifact_streamed(data: bytes) -> None:
    blocks = (data[i:i + 4096] for i in range(0, len(data), 4096))
    payload = EdifactReader(MAPPINGS).stream(blocks, filename="fuzz.edi", window=8192,
                                             slice_segments=50)
    payload.open()
    for _event in payload.events(partner=ACME, transmission_id="t1", filename="fuzz.edi",
                                 known=lambda ref: None):
        pass


@FUZZ
@given(data=mutated(samples("edifact", "edi")))
def test_edifact_reader_reads_or_refuses_mutated_samples(data: bytes) -> None:
    """In memory: every mutation of every EDIFACT sample is read or refused as PayloadError."""
    reads_or_refuses(read_edifact, data)


@FUZZ
@given(data=mutated(samples("edifact", "edi")))
def test_streamed_edifact_reader_reads_or_refuses_mutated_samples(data: bytes) -> None:
    """Streamed, with small windows and slices so that every mutation crosses them."""
    reads_or_refuses(read_edifact_streamed, data)


@FUZZ
@given(data=mutated(samples("xml", "xml")))
def test_xml_reader_reads_or_refuses_mutated_samples(data: bytes) -> None:
    """UBL, CII, Order-X … mutated: parsed, detected and matched, or refused."""
    reads_or_refuses(read_xml, data)


def read_xml(data: bytes) -> None:
    payload = XmlReader(MAPPINGS).parse(data, filename="fuzz.xml")
    payload.summary()
    payload.documents(partner=ACME, transmission_id="t1", filename="fuzz.xml")


def read_csv(data: bytes) -> None:
    payload = CsvReader(MAPPINGS).parse(data, filename="fuzz.csv")
    payload.summary()
    mapping = payload.matched[0] if payload.matched else CSV_MAPPINGS[0]
    partner = Partner(id="acme", name="Acme", documents=[
        DocumentSettings(type=mapping.document, format="csv", mapping=mapping.id)])
    payload.documents(partner=partner, transmission_id="t1", filename="fuzz.csv")


def read_sms(data: bytes) -> None:
    payload = SmsReader().parse(data, filename="sms.txt")
    payload.summary()
    payload.documents(partner=ACME, transmission_id="t1", filename="sms.txt")


@FUZZ
@given(data=mutated(samples("csv", "csv")))
def test_csv_reader_reads_or_refuses_mutated_samples(data: bytes) -> None:
    """Delimited text mutated: recognised by a mapping or refused."""
    reads_or_refuses(read_csv, data)


@FUZZ
@given(data=mutated(sms_samples()))
def test_sms_reader_reads_or_refuses_mutated_envelopes(data: bytes) -> None:
    """SMS envelopes mutated (headers and order text alike): read or refused."""
    reads_or_refuses(read_sms, data)
