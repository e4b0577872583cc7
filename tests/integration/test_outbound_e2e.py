"""Outbound end to end through ``edigw serve``: the ERP publishes documents to the outbound
exchange of the real RabbitMQ; the gateway renders them, delivers them to the partner's
folder, records each step; a message naming an unknown partner is dead-lettered with its
reason and nothing is sent; a crash between receiving and delivering loses nothing."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.integration.e2e import MAPPINGS, Workspace

SAMPLE = MAPPINGS / "outbound" / "edifact" / "eancom-invoic-d96a.sample.json"


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"exchange": f"edi.outbound.e2e-{tag}", "queue": f"edigw.outbound.e2e-{tag}",
            "dead_exchange": f"edi.outbound.e2e-{tag}.dead",
            "dead_queue": f"edigw.outbound.e2e-{tag}.dead"}


@pytest.fixture
def ws(tmp_path: Path, store_url: str, names: dict[str, str]) -> Iterator[Workspace]:
    ws = Workspace.create(tmp_path, store_url)
    ws.broker_extra = (f'outbound_exchange = "{names["exchange"]}"\n'
                       f'outbound_queue = "{names["queue"]}"\n'
                       f'outbound_dead_exchange = "{names["dead_exchange"]}"\n'
                       f'outbound_dead_queue = "{names["dead_queue"]}"\n')
    ws.extra_config = '\n[outbound]\nsender_id = "5412345000013"\nretry_initial = 0.2\n'
    ws.write_config()
    (ws.partners / "acme.toml").write_text(f"""\
id = "acme"
name = "Acme retail"
[identifiers]
unb = [{{ id = "5400000000003", qualifier = "14" }}]
[outbound]
channel = "folder"
folder = "{tmp_path / 'to-acme'}"
formats = {{ invoice = "eancom-invoic-d96a", order-response = "ubl" }}
""")
    yield ws
    ws.close()
    _delete(ws.broker_url, names)


def _delete(url: str, names: dict[str, str]) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for q in (names["queue"], names["dead_queue"]):
            ch.queue_delete(q)
        for x in (names["exchange"], names["dead_exchange"]):
            ch.exchange_delete(x)
    finally:
        conn.close()


def _publish(url: str, exchange: str, key: str, body: bytes, message_id: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, body, pika.BasicProperties(
            message_id=message_id, delivery_mode=2, content_type="application/json"),
            mandatory=True)
    finally:
        conn.close()


def _dead_letters(url: str, queue: str) -> list[tuple[dict[str, Any], bytes]]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    out = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((dict(props.headers or {}), body))
    finally:
        conn.close()


def _invoice(number: str) -> bytes:
    doc = json.loads(SAMPLE.read_text())
    doc.update(invoice_number=number)
    for key in ("message_id", "source", "partner"):
        doc.pop(key, None)
    return json.dumps(doc).encode()


def _outbound(ws: Workspace) -> list[Any]:
    return [t for t in ws.transmissions() if t.direction == "out"]


def test_erp_documents_are_rendered_delivered_and_tracked(ws: Workspace, names, tmp_path):
    svc = ws.serve()
    for n in range(20):
        _publish(ws.broker_url, names["exchange"], "invoice.acme", _invoice(f"E2E-{n:03d}"),
                 f"erp-{n}")
    # The same ERP message again (a redelivery): not sent twice.
    _publish(ws.broker_url, names["exchange"], "invoice.acme", _invoice("E2E-000"), "erp-0")
    svc.wait_until(lambda: sum(t.status == "DELIVERED" for t in _outbound(ws)) == 20, 60,
                   "20 invoices delivered")
    files = sorted((tmp_path / "to-acme").iterdir())
    assert len(files) == 20
    refs = sorted(int(f.read_text().split("UNB+")[1].split("'")[0].split("+")[4])
                  for f in files)
    assert refs == list(range(1, 21))  # gap-free control references, one per interchange
    assert len(_outbound(ws)) == 20
    # Where is invoice E2E-007? Delivered, to the folder.
    out = ws.cli("explain", "--partner", "acme", "--invoice", "E2E-007", check=False)
    assert "deliver" in out.stdout.lower(), out.stdout
    log = ws.cli("log", "--direction", "out", "--limit", "100").stdout
    assert log.count("DELIVERED") >= 20
    with urllib.request.urlopen(svc.http_url + "/readyz", timeout=10) as reply:
        ready = json.loads(reply.read())
    assert ready["outbound_consumer"]["connected"] is True
    assert ready["outbound_consumer"]["received"] == 21  # the repeat acknowledged too


def test_unknown_partner_is_dead_lettered_with_its_reason(ws: Workspace, names, tmp_path):
    svc = ws.serve()
    _publish(ws.broker_url, names["exchange"], "invoice.nobody", _invoice("NOBODY-1"), "x-1")
    _publish(ws.broker_url, names["exchange"], "invoice.acme", b"{not json", "x-2")
    svc.wait_until(lambda: len([t for t in _outbound(ws) if t.status == "FAILED"]) == 2, 30,
                   "two refusals recorded")
    deadline = time.monotonic() + 20
    dead: list[tuple[dict[str, Any], bytes]] = []
    while len(dead) < 2 and time.monotonic() < deadline:
        dead += _dead_letters(ws.broker_url, names["dead_queue"])
        time.sleep(0.2)
    reasons = {h.get("x-edigw-stage"): str(h.get("x-edigw-reason")) for h, _ in dead}
    assert "unknown partner 'nobody'" in reasons["partner"]
    assert "not JSON" in reasons["parse"]
    assert not (tmp_path / "to-acme").exists() or not list((tmp_path / "to-acme").iterdir())
    failed = {t.stage: t for t in _outbound(ws)}
    assert failed["partner"].status == "FAILED" and "nobody" in failed["partner"].reason


def test_a_kill_between_receiving_and_delivering_loses_nothing(ws: Workspace, names, tmp_path):
    target = tmp_path / "to-acme"
    target.write_text("a file where the partner's folder should be")  # deliveries fail
    svc = ws.serve()
    for n in range(5):
        _publish(ws.broker_url, names["exchange"], "invoice.acme", _invoice(f"K-{n}"), f"k-{n}")
    svc.wait_until(lambda: len([t for t in _outbound(ws) if t.status == "RENDERED"]) == 5, 30,
                   "five rendered (the messages acknowledged)")
    svc.wait_until(lambda: any(e["event"] == "delivery-retry" for t in _outbound(ws)
                               for e in ws.store.events(t.id)), 30, "a failed attempt")
    svc.kill()
    target.unlink()
    target.mkdir()
    svc = ws.serve()
    svc.wait_until(lambda: sum(t.status == "DELIVERED" for t in _outbound(ws)) == 5, 60,
                   "five delivered after the restart")
    assert len(list(target.iterdir())) == 5
