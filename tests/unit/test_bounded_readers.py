"""Bounded reading (issue 13): no number, repetition or size taken from a payload drives a
loop, an allocation or a conversion unchecked; every reader failure is a PayloadError that
names where it broke and who the envelope said sent it; long loops heed the time limit."""

from __future__ import annotations

import datetime as dt
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from gateway.core import deadline
from gateway.core.errors import EdifactSyntaxError, PayloadError, TimeLimitExceeded
from gateway.core.ports import Sender
from gateway.formats.edifact import tokenizer
from gateway.formats.edifact.envelope import read_interchanges
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.edifact.stream import read_stream
from gateway.formats.mapping import MappingSet
from gateway.formats.sms.envelope import SmsEnvelope
from gateway.formats.sms.reader import MAX_TEXT, SmsReader

REPO = Path(__file__).resolve().parents[2]
UNB = b"UNA:+.? 'UNB+UNOC:3+5412345000013:14+5498765000010:14+20261127:1042+ICR1'"
MESSAGE = (b"UNH+1+ORDERS:D:96A:UN:EAN008'BGM+220+PO1+9'DTM+137:20261127:102'"
           b"LIN+1++4006381333931:EN'QTY+21:5'UNS+S'UNT+7+1'")


def streamed(data: bytes, **kw) -> list:
    return list(read_stream([data[i:i + 65536] for i in range(0, len(data), 65536)], **kw))


def within(seconds: float, work) -> object:
    """Run ``work`` in a thread; fail (not hang) when it has not ended after ``seconds``."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


# -- counts checked before int() ---------------------------------------------------------------


def test_unz_count_of_5000_digits_rejects_the_interchange_not_valueerror():
    """Python's 4,300-digit int limit is never reached: the count is refused, code 39, at UNZ."""
    data = UNB + MESSAGE + b"UNZ+" + b"9" * 5000 + b"+ICR1'"
    for interchange in (read_interchanges(data)[0],
                        next(e.interchange for e in streamed(data) if hasattr(e, "messages"))):
        error = interchange.error
        assert isinstance(error, EdifactSyntaxError)
        assert error.code == "39" and error.position.tag == "UNZ"
        assert error.position.element == "UNZ/0036" and error.position.line == 1
        assert "more than 6 digits (5000)" in error.reason and len(error.reason) < 200


def test_unt_count_of_5000_digits_fails_its_message_only():
    data = UNB + MESSAGE.replace(b"UNT+7+1'", b"UNT+" + b"7" * 5000 + b"+1'") + b"UNZ+1+ICR1'"
    [interchange] = read_interchanges(data)
    assert interchange.error is None
    error = interchange.messages[0].error
    assert error.code == "39" and error.position.element == "UNT/0074"


def test_une_count_of_5000_digits_and_unicode_digits_are_refused_counts():
    """``'²'.isdigit()`` is True but int('²') fails: only ASCII digits are counts."""
    group = b"UNG+ORDERS+A+B+261127:1042+G1+UN+D:96A'" + MESSAGE + b"UNE+%s+G1'"
    for count, code in ((b"1" * 5000, "39"), ("²".encode(), "12")):
        data = UNB + group.replace(b"%s", count) + b"UNZ+1+ICR1'"
        error = read_interchanges(data)[0].error
        assert error is not None and error.code == code
        assert error.position.element == "UNE/0060"
    unz = UNB + MESSAGE + "UNZ+¹+ICR1'".encode()
    assert read_interchanges(unz)[0].error.code == "12"


def test_uno_object_length_of_5000_digits_is_refused():
    data = (b"UNA:+.? 'UNB+UNOC:4+5412345000013:14+5498765000010:14+20261127:1042+ICU1'"
            b"UNO+PKG1+A+B+" + b"1" * 5000 + b"'0123456789UNP+10+PKG1'UNZ+1+ICU1'")
    error = read_interchanges(data)[0].error
    assert error.code == "39" and error.position.element == "UNO/S022/0810"


def test_uno_segments_before_object_from_the_file_do_not_loop():
    """The 139-byte file whose UNO S022 0814 (99999999999) drove ``range()``: it ends at once,
    the count refused (n..3) and the package still framed by its UNP."""
    data = (b"UNA:+.? '\nUNB+UNOC:4+5412345000013:14+5498765000010:14+20261127:1042+ICU1'\n"
            b"UNO+PKG1+A+B+10:99999999999'\n0123456789UNP+10+PKG1'\nUNZ+1+ICU1'\n")
    [interchange] = within(5, lambda: read_interchanges(data))
    assert interchange.error.code == "39"
    assert interchange.error.position.element == "UNO/S022/0814"
    events = within(5, lambda: streamed(data))
    assert events[-1].interchange.error.code == "39"


def test_uno_segments_before_object_within_bounds_still_skips_them():
    """A 0814 of 2 inside its n..3 is honoured, and stops at the end of the text if short."""
    data = (b"UNA:+.? 'UNB+UNOC:4+5412345000013:14+5498765000010:14+20261127:1042+ICU1'"
            b"UNO+PKG1+A+B+10:999'0123456789UNP+10+PKG1'UNZ+1+ICU1'")
    with pytest.raises(EdifactSyntaxError, match="has no UNP"):
        within(5, lambda: read_interchanges(data))


# -- positions: one line index, not a count from the start per error --------------------------


def test_error_positions_cost_linear_time_in_a_file_of_many_broken_messages():
    """1.3 MB, one line per segment, a UNT count error in each of 20,000 messages: the
    positions took 28 s of CPU (a count of newlines from the start per error); now well
    under 3 s, and each line number is still exact."""
    message = MESSAGE.replace(b"UNT+7+", b"UNT+8+").replace(b"'", b"'\n")
    messages = b"".join(message.replace(b"+1'", b"+%d'" % n).replace(b"UNH+1+", b"UNH+%d+" % n)
                        for n in range(1, 20_001))
    data = UNB + b"\n" + messages + b"UNZ+20000+ICR1'\n"
    start = time.process_time()
    [interchange] = read_interchanges(data)
    spent = time.process_time() - start
    assert spent < 3.0, f"{spent:.1f} s"
    errors = [m.error for m in interchange.messages]
    assert all(e is not None and e.code == "29" for e in errors)
    assert [e.position.line for e in errors[:3]] == [8, 15, 22]
    assert errors[-1].position.line == 1 + 7 * 20_000
    assert errors[-1].position.column == 1


def test_positions_after_a_streamed_window_slides_are_still_exact():
    """The line index follows the window: an error in the last window names its line."""
    message = MESSAGE.replace(b"'", b"'\n")
    data = UNB + b"\n" + message * 3000 + b"UNZ+3000+ICR1'\nDTM+1'\n"
    with pytest.raises(EdifactSyntaxError) as caught:
        streamed(data, window=4096)
    assert caught.value.position.line == 2 + 7 * 3000 + 1


# -- memory: a stated multiple of the size -----------------------------------------------------


def peak_of(work) -> tuple[int, object]:
    tracemalloc.start()
    try:
        try:
            result: object = work()
        except PayloadError as exc:
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


def test_three_megabytes_of_empty_elements_stay_within_the_memory_factor():
    """5 million empty elements took 100 times their size (1.7 GB for 15 MB): now refused
    before they are split, code 16, in memory and streamed alike."""
    data = UNB + b"UNH+1+ORDERS:D:96A:UN'NAD" + b"+" * 3_000_000 + b"'UNT+3+1'UNZ+1+ICR1'"
    limit = tokenizer.MEMORY_FACTOR * len(data)
    for read in (lambda: read_interchanges(data), lambda: streamed(data)):
        peak, result = peak_of(read)
        assert peak < limit, f"{peak / len(data):.0f} times the size"
        assert isinstance(result, EdifactSyntaxError) and result.code == "16"
        assert result.position.segment is not None


@pytest.mark.parametrize("unit", [b"NA+ab+ab'", b"NAD+ab'", b"NAD'", b"+ab"],
                         ids=["short-segments", "one-element", "bare-tags", "one-segment"])
def test_the_densest_text_the_reader_accepts_stays_within_the_memory_factor(unit):
    """Shapes just under the density limit, 2 MB each: read (or refused), below the factor."""
    body = (b"NAD" + unit * (2_000_000 // len(unit)) + b"'") if unit.startswith(b"+") \
        else unit * (2_000_000 // len(unit))
    data = UNB + b"UNH+1+ORDERS:D:96A:UN'" + body + b"UNT+3+1'UNZ+1+ICR1'"
    peak, _result = peak_of(lambda: read_interchanges(data))
    assert peak < tokenizer.MEMORY_FACTOR * len(data), f"{peak / len(data):.0f} times"


def test_a_real_file_of_two_megabytes_is_read_well_within_the_factor():
    """The density check refuses no real EDIFACT: 2 MB of orders read, at about 35x."""
    sample = (REPO / "mappings/edifact/eancom-orders-d96a.sample.edi").read_bytes()
    head, body = sample[:sample.index(b"UNH")], sample[sample.index(b"UNH"):sample.index(b"UNZ")]
    count = 2_000_000 // len(body)
    bodies = b"".join(body.replace(b"UNH+", b"UNH+X%d" % n, 1) for n in range(count))
    data = head + bodies + b"UNZ+%d+X'" % count
    peak, result = peak_of(lambda: read_interchanges(data))
    assert not isinstance(result, PayloadError), result
    assert peak < 48 * len(data)


# -- who sent a file that broke ----------------------------------------------------------------


def test_a_truncated_interchange_names_its_unb_sender_on_the_error():
    """The pipeline attributes a failed file to the partner its UNB names (``senders``)."""
    data = UNB + MESSAGE
    reader = EdifactReader(MappingSet.load(REPO / "mappings"))
    with pytest.raises(EdifactSyntaxError) as caught:
        reader.parse(data, filename="x.edi")
    assert caught.value.senders == (Sender("5412345000013", "14"),)
    with pytest.raises(EdifactSyntaxError) as streamed_error:
        streamed(data)
    assert streamed_error.value.senders == (Sender("5412345000013", "14"),)


def test_a_file_refused_before_any_unb_names_no_sender():
    with pytest.raises(EdifactSyntaxError) as caught:
        read_interchanges(b"UNH+1+ORDERS:D:96A:UN'BGM+220+1'")
    assert caught.value.senders == ()


# -- the per-transmission time limit -----------------------------------------------------------


def test_a_long_read_stops_at_the_time_limit():
    """The segment loops look at ``deadline.check()``: past the limit, TimeLimitExceeded (a
    PayloadError), in memory and streamed."""
    data = UNB + MESSAGE * 2000 + b"UNZ+2000+ICR1'"
    for read in (lambda: read_interchanges(data), lambda: streamed(data, window=8192)):
        with deadline.limit(1e-9), pytest.raises(TimeLimitExceeded):
            time.sleep(0.001)
            read()


# -- SMS ---------------------------------------------------------------------------------------


def test_an_sms_text_longer_than_any_messaging_service_sends_is_refused_unread():
    """200,000 lines took seconds and 90 times their size; the text is capped (PayloadError)."""

    def envelope(text: str) -> bytes:
        return SmsEnvelope(provider="twilio", message_id="SM1", sender="+33612345678",
                           recipient="+33700000000",
                           received=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), text=text).to_bytes()

    with pytest.raises(PayloadError, match="at most 65536") as caught:
        SmsReader().parse(envelope("3 x 4006381333931\n" * 200_000), filename="sms.txt")
    assert caught.value.position.line == 1
    longest = "3 x 4006381333931\n" * (MAX_TEXT // 18)
    assert SmsReader().parse(envelope(longest), filename="sms.txt").order.items


# -- mapping conversions -----------------------------------------------------------------------


def test_a_huge_value_is_neither_converted_nor_remembered_by_the_conversion_caches():
    """The caches are per process (4,096 entries): a value of megabytes in each would pin
    gigabytes; such a value is refused as a number and never kept."""
    from gateway.formats.mapping import convert

    huge = "9" * 1_000_000
    with pytest.raises(convert.ConversionError, match="too long to be a decimal number"):
        convert.to_decimal(huge)
    assert convert.to_gtin(huge)[0] is None
    with pytest.raises(convert.ConversionError) as caught:
        convert.to_date(huge, "102")
    assert len(str(caught.value)) < 200
    for cache in (convert.known_decimals, convert.known_gtins, convert._dates):
        assert all(len(k if isinstance(k, str) else k[0]) <= 64 for k in cache)
    assert convert.to_decimal("12.50") == convert.known_decimals["12.50"]


@pytest.mark.parametrize("data", [b"UNA:+.", b"UNA:+.? 'UNB+UNOC:3+A+B+261127:1042+1'UNA:+"],
                         ids=["alone", "after-an-interchange"])
def test_an_incomplete_una_ends_the_tokenizer_with_an_error_not_a_loop(data):
    """Found by the fuzzer: a UNA with fewer than six service characters was taken as the
    next interchange's start at the very offset being read, and the tokenizer never moved."""
    for read in (lambda: read_interchanges(data), lambda: streamed(data)):
        with pytest.raises(EdifactSyntaxError):
            within(5, read)
