"""End to end: ``kill -9`` of ``edigw serve`` in the middle of 1,000 files loses nothing.

Delivery is at-least-once: a message confirmed by the broker whose row was not yet marked
published goes out again after the restart, with the same message_id. Repeats are counted
and printed, never failed on.
"""

from __future__ import annotations

import collections
import json
import os

import pytest

from tests.integration.e2e import ACME_UNB, Workspace, order_file

pytestmark = pytest.mark.integration

FILES = 1000
KILL_AT = 300  # transmissions recorded when the service is killed


def claimed_files(inbox) -> set[str]:
    """The files of an inbox claimed by instances (``.claimed/<instance>/``)."""
    root = inbox / ".claimed"
    return {f.name for d in root.iterdir() for f in d.iterdir()} if root.exists() else set()


@pytest.mark.slow
def test_kill_9_in_the_middle_of_1000_files_loses_no_file_and_no_order(tmp_path, store_url, rabbit_url):
    """Killed with -9 after ~300 of 1,000 files, each file is in processed/ with its transmission or still in the inbox; after a restart the inbox is empty, the outbox is empty and every order is on the queue."""
    with Workspace.create(tmp_path / "gw", store_url) as ws:
        ws.add_partner("acme", *ACME_UNB)
        names = [f"order-{n:05d}.edi" for n in range(1, FILES + 1)]
        orders = {f"PO-{n:06d}" for n in range(1, FILES + 1)}
        service = ws.serve()
        for n, name in enumerate(names, 1):
            ws.drop(name, order_file(n))
        service.wait_until(lambda: ws.total() >= KILL_AT, 120, f"{KILL_AT} transmissions",
                           interval=0.02)
        service.kill()

        at_kill = ws.counts()
        processed = set(os.listdir(ws.processed))
        waiting = {p for p in os.listdir(ws.inbox) if not p.startswith(".")}
        claimed = claimed_files(ws.inbox)  # taken by the killed instance, not yet moved on
        assert not waiting & claimed, "a file is both in the inbox and claimed"
        waiting |= claimed
        recorded = {t.filename for t in ws.transmissions()}
        print(f"\nkilled at {at_kill}, outbox {ws.store.outbox_size()}, "
              f"{len(processed)} in processed/, {len(waiting)} in the inbox")
        assert processed | waiting == set(names), "a file vanished"
        assert not processed & waiting, "a file is in two places"
        assert processed <= recorded, "a file was moved to processed/ before its receive committed"
        assert waiting, "the kill came after every file was taken; nothing was tested"
        assert sum(at_kill.values()) < FILES

        service = ws.serve()
        service.wait_until(lambda: ws.counts() == {"PUBLISHED": FILES}
                           and ws.store.outbox_size() == 0, 180,
                           f"{FILES} transmissions PUBLISHED after the restart")
        assert not [p for p in os.listdir(ws.inbox) if not p.startswith(".")]
        assert not claimed_files(ws.inbox), "a claimed file was never given back"
        assert set(os.listdir(ws.processed)) == set(names)
        log = ws.log_json()
        assert sorted(r["filename"] for r in log) == names, "one transmission per file"
        assert all(r["document_count"] == 1 for r in log)

        received = ws.consume(expected=FILES, timeout=60, idle=1.0)
        numbers = collections.Counter(json.loads(m.body)["order_number"] for m in received)
        by_id = collections.Counter(m.properties.message_id for m in received)
        repeats = sum(c - 1 for c in numbers.values())
        print(f"crash e2e: {len(received)} messages for {FILES} orders, {repeats} repeated "
              f"(at-least-once), {len(by_id)} distinct message ids")
        missing = orders - set(numbers)
        assert not missing, f"{len(missing)} orders never reached the queue: {sorted(missing)[:10]}"
        assert set(numbers) == orders and len(by_id) == FILES
        assert ws.status().get("outbox") == 0
        assert service.stop() == 0
