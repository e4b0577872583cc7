"""End to end (issue 13): the two poison files of the trust issue, dropped into a running
``edigw serve`` between ten good orders, fail alone; a restart that finds them still
RECEIVED answers ``/healthz`` and goes on.

The files are made here: an interchange whose UNZ count has 5,000 digits (``int()`` raised
ValueError, which stopped processing for good) and a syntax-4 interchange whose UNO package
length (S022 0814) is 99999999999 (``skip_package`` looped for ever).
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from gateway.core.pipeline import Pipeline
from gateway.core.ports import Incoming
from gateway.store.archive import Archive
from tests.integration.e2e import ACME_UNB, Workspace, order_file

pytestmark = pytest.mark.integration


def unz_digits(n: int) -> bytes:
    good = order_file(n).decode()
    return good.replace(f"UNZ+1+IC{n:08d}'", f"UNZ+{'1' * 5000}+IC{n:08d}'").encode()


def uno_loop(n: int) -> bytes:
    return (f"UNA:+.? '\nUNB+UNOC:4+{ACME_UNB[0]}:14+5498765000010:14+20261127:1042+ICU{n}'\n"
            f"UNO+PKG{n}+A+B+10:99999999999'\n0123456789UNP+10+PKG{n}'\nUNZ+1+ICU{n}'\n"
            ).encode()


def healthz(url: str) -> int:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        return r.status


def test_poison_files_fail_alone_and_a_restart_with_them_received_still_serves(tmp_path,
                                                                              store_url):
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.add_partner("acme", *ACME_UNB)
        ws.extra_config = "\n[processing]\ntime_limit = 10\n"
        ws.write_config()
        service = ws.serve()
        for n in range(1, 6):
            ws.drop(f"good-{n:02d}.edi", order_file(n))
        ws.drop("poison-unz.edi", unz_digits(90))
        ws.drop("poison-uno.edi", uno_loop(91))
        for n in range(6, 11):
            ws.drop(f"good-{n:02d}.edi", order_file(n))
        service.wait_until(lambda: ws.counts().get("PUBLISHED") == 10
                           and ws.counts().get("FAILED") == 2, 60,
                           "ten orders published, two poison files failed")
        orders = ws.consume(expected=10, timeout=30)
        assert sorted(json.loads(m.body)["order_number"] for m in orders) == \
            [f"PO-{n:06d}" for n in range(1, 11)]
        for name in ("poison-unz.edi", "poison-uno.edi"):
            row = ws.settled(name)
            assert row.status == "FAILED" and row.stage and row.reason, row
            assert row.partner_id == "acme", row  # attributed by its UNB
        assert healthz(service.http_url) == 200
        service.stop()

        # The poison files again, left RECEIVED as a crash would leave them: the next
        # start must not exit or hang on them.
        pipeline = Pipeline(store=ws.store, archive=Archive(ws.archive), partners=None,
                            readers=[])
        left = [pipeline.receive(Incoming(data=data, channel="folder", channel_ref=None,
                                          filename=name)).transmission_id
                for name, data in (("again-unz.edi", unz_digits(92)),
                                   ("again-uno.edi", uno_loop(93)))]
        assert {ws.store.get_transmission(t).status for t in left} == {"RECEIVED"}
        service = ws.serve()
        assert healthz(service.http_url) == 200
        ws.drop("good-11.edi", order_file(11))
        service.wait_until(lambda: all(ws.store.get_transmission(t).status == "FAILED"
                                       for t in left)
                           and ws.counts().get("PUBLISHED") == 11, 60,
                           "the left poison files failed, the next order published")
        assert [json.loads(m.body)["order_number"] for m in ws.consume(expected=1, timeout=30)] == \
            ["PO-000011"]
        assert service.alive
