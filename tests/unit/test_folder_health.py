"""The folder channel records its health like SFTP and e-mail: ``edigw channels`` no longer
reads "never ran" for an inbox that is watched."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.channels.folder.watcher import FolderChannel, FolderSpec
from gateway.cli import main
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store

ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """Receives into nothing, or fails like a store that is away."""

    def __init__(self) -> None:
        self.fail = False
        self.items: list[Incoming] = []

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        if self.fail:
            raise StoreError("store down")
        self.items += items
        return [Receipt(f"t{len(self.items) - len(items) + i}") for i in range(len(items))]

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        pass


@pytest.fixture
def records(tmp_path: Path) -> ChannelRecords:
    store = Store.from_url(f"sqlite:///{tmp_path / 'health.sqlite3'}")
    return ChannelRecords(store)


def channel(tmp_path: Path, receiver: Receiver, records: ChannelRecords,
            health_every: float = 30.0) -> FolderChannel:
    spec = FolderSpec(path=tmp_path / "in", processed=tmp_path / "done",
                      failed=tmp_path / "bad", partner="acme")
    spec.path.mkdir()
    return FolderChannel(spec, receiver=receiver, on_received=lambda _: None,
                         records=records, health_every=health_every)


def test_a_watched_inbox_is_recorded_ok_with_the_files_it_took(tmp_path: Path,
                                                                records: ChannelRecords) -> None:
    """The first look records OK under folder:<inbox>; a file taken later is counted once
    the record is due."""
    ch = channel(tmp_path, Receiver(), records, health_every=0.0)
    ch.look()
    h = records.get(f"folder:{tmp_path / 'in'}")
    assert h is not None and h.healthy and h.kind == "folder" and h.partner_id == "acme"
    (tmp_path / "in" / "order.edi").write_bytes(b"UNB'")
    ch.look()
    assert ch.look() == 1
    h = records.get(f"folder:{tmp_path / 'in'}")
    assert h is not None and h.detail == "1 file(s) taken since the last record"


def test_a_store_failure_then_recovery_is_recorded_at_once(tmp_path: Path,
                                                           records: ChannelRecords) -> None:
    """A look that cannot receive is recorded as a failure at once (the state changed), and
    the next good look as OK at once, even within health_every."""
    r = Receiver()
    ch = channel(tmp_path, r, records, health_every=3600.0)
    ch.look()
    (tmp_path / "in" / "order.edi").write_bytes(b"UNB'")
    ch.look()
    r.fail = True
    ch.look()
    h = records.get(ch.health_name)
    assert h is not None and h.consecutive_failures == 1 and "store down" in str(h.last_error)
    ch.look()  # failing again within health_every: not written again
    assert records.get(ch.health_name).consecutive_failures == 1  # type: ignore[union-attr]
    r.fail = False
    ch.look()
    ch.look()
    h = records.get(ch.health_name)
    assert h is not None and h.healthy and h.last_error is None


def test_an_unreadable_inbox_is_a_failure(tmp_path: Path, records: ChannelRecords) -> None:
    """An inbox that cannot be listed (here: a file where the folder should be) fails."""
    spec = FolderSpec(path=tmp_path / "in", processed=tmp_path / "done",
                      failed=tmp_path / "bad")
    ch = FolderChannel(spec, receiver=Receiver(), on_received=lambda _: None, records=records)
    (tmp_path / "in").write_text("not a folder")
    with pytest.raises(FileExistsError):
        ch.look()  # the mkdir of the inbox refuses
    h = records.get(ch.health_name)
    assert h is not None and h.consecutive_failures == 1 and "FileExistsError" in str(
        h.last_error)


def test_edigw_channels_shows_the_running_inbox_ok(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The channel loop of a configured inbox records its look: edigw channels reads OK,
    not 'never ran'."""
    (tmp_path / "partners").mkdir()
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[[inbox]]\npath = "inbox"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDIGW_STORE_URL", raising=False)
    before = json.loads(CliRunner().invoke(main, ["-c", "gateway.toml", "channels", "--json"]
                                           ).output)
    assert [r["state"] for r in before if r["kind"] == "folder"] == ["never ran"]
    store = Store.from_url("sqlite:///var/edigw.sqlite3")
    spec = FolderSpec(path=Path("inbox"), processed=Path("inbox/processed"),
                      failed=Path("inbox/failed"))
    ch = FolderChannel(spec, receiver=Receiver(), on_received=lambda _: None,
                       records=ChannelRecords(store))

    async def one_look() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(ch.run(stop))
        while ch._recorded is None:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(one_look())
    store.close()
    r = CliRunner().invoke(main, ["-c", "gateway.toml", "channels", "--json"])
    rows = [row for row in json.loads(r.output) if row["kind"] == "folder"]
    assert [(row["channel"], row["state"]) for row in rows] == [("folder:inbox", "OK")]
    assert rows[0]["last_success"] is not None
