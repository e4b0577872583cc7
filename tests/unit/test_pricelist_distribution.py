"""Price lists published once and sent to every subscriber: whole, or only the changes since
the version a partner holds (its last copy DELIVERED), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.channels.intake import OutboundIntake, OutboundRefused
from gateway.channels.outbound import DeliveryRefused, OutboundDispatcher
from gateway.channels.pricelists import (
    PriceListDistributor,
    difference,
    keyed,
    parse_price_list,
    price_list_standings,
)
from gateway.config import Partner, PartnerOutbound
from gateway.formats.render import OutboundMappings, RenderContext
from gateway.store.archive import Archive
from gateway.store.db import Store

#: LIN 1229 as the EANCOM PRICAT mappings code the item actions.
ACTIONS = {"add": "1", "delete": "2", "change": "3"}
FUNCTIONS = {"original": "9", "replace": "5", "change": "4"}


@dataclass
class _Body:
    text: str
    content_type: str = "text/plain"
    message_count: int = 1

    def seal(self, control_ref: str) -> bytes:
        return (f"UNB+{control_ref}\n" if control_ref else "").encode() + self.text.encode()


@dataclass
class _EdifactLike:
    """BGM with the function code, one LIN per item with its action code and key, PRI, DTM."""

    id: str = "fake-pricat"
    document: str = "price-list"
    syntax: str = "edifact"
    aliases: tuple[str, ...] = ("edifact",)
    uses_control_ref: bool = True
    file: str = "fake-pricat.yaml"
    suffix: str = ".edi"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> _Body:
        lines = [f"BGM+9+{document['price_list_number']}+"
                 f"{FUNCTIONS.get(document.get('function') or 'original', '9')}"]
        for n, item in enumerate(document["items"], 1):
            key = item.get("gtin") or item.get("item_code") or item.get("supplier_article")
            lines.append(f"LIN+{item.get('line_number') or n}+{ACTIONS.get(item.get('action'), '')}"
                         f"+{key}")
            lines += [f"PRI+AAA:{p['amount']}" for p in item.get("prices", [])]
            if item.get("valid_from"):
                lines.append(f"DTM+194:{item['valid_from']}")
            if item.get("valid_to"):
                lines.append(f"DTM+206:{item['valid_to']}")
        return _Body("\n".join(lines) + "\n")


@dataclass
class _CsvLike:
    """One row per item: key;action;price."""

    id: str = "fake-pricelist-csv"
    document: str = "price-list"
    syntax: str = "csv"
    aliases: tuple[str, ...] = ("csv",)
    uses_control_ref: bool = False
    file: str = "fake-csv.yaml"
    suffix: str = ".csv"

    def render(self, document: dict[str, Any], ctx: RenderContext) -> _Body:
        rows = ["key;action;price"]
        for item in document["items"]:
            key = item.get("gtin") or item.get("item_code") or item.get("supplier_article")
            price = item["prices"][0]["amount"] if item.get("prices") else ""
            rows.append(f"{key};{item.get('action') or ''};{price}")
        return _Body("\n".join(rows) + "\n")


class _Sender:
    """Delivers at once (as a folder write does), or refuses for the partners in
    ``refuse``; keeps what each partner got."""

    def __init__(self) -> None:
        self.refuse: set[str] = set()
        self.got: dict[str, list[bytes]] = {}

    def send(self, row: Any, data: bytes, partner: Any) -> str:
        if row.partner_id in self.refuse:
            raise DeliveryRefused("negative MDN: processed/error")
        self.got.setdefault(row.partner_id, []).append(data)
        return f"to {row.partner_id}"


def _price_list(number: str, items: list[tuple[str, str, str]], *, valid_from: str,
                **extra: Any) -> bytes:
    """A list as the ERP publishes it: (key field, key, price) per item."""
    doc = {"schema": "edigw.price-list/1", "price_list_number": number,
           "issue_date": "2026-12-01", "valid_from": valid_from, "currency": "EUR",
           "items": [{field: key, "description": f"article {key}",
                      "prices": [{"type": "AAA", "amount": price}]}
                     for field, key, price in items], **extra}
    return json.dumps(doc).encode()


V1 = [("gtin", "4000000000011", "10.00"), ("gtin", "4000000000028", "20.00"),
      ("item_code", "C-3", "30.00"), ("supplier_article", "SA-4", "40.00")]
# A: same price written otherwise; B: price changed; C-3 withdrawn; SA-4 same; E new.
V2 = [("gtin", "4000000000011", "10.0"), ("gtin", "4000000000028", "21.50"),
      ("supplier_article", "SA-4", "40.00"), ("gtin", "4000000000035", "5.00")]


@pytest.fixture
def world(store_url: str, tmp_path: Path) -> Any:
    store = Store.from_url(store_url)
    archive = Archive(tmp_path / "archive")
    mappings = OutboundMappings({"fake-pricat": _EdifactLike(),
                                 "fake-pricelist-csv": _CsvLike()})
    partners = {
        "edi": Partner(id="edi", name="EDI full", outbound=PartnerOutbound(
            formats={"price-list": "edifact"}, price_lists=["main"])),
        "csvco": Partner(id="csvco", name="CSV full", outbound=PartnerOutbound(
            formats={"price-list": "csv"}, price_lists=["main", "other"])),
        "delta": Partner(id="delta", name="Changes only", outbound=PartnerOutbound(
            formats={"price-list": "edifact"}, price_lists=["main"],
            price_list_mode="changes")),
        "off": Partner(id="off", name="Disabled", enabled=False, outbound=PartnerOutbound(
            formats={"price-list": "csv"}, price_lists=["main"])),
        "none": Partner(id="none", name="Subscribes to nothing"),
    }
    intake = OutboundIntake(store=store, archive=archive, partners=partners.get,
                            mappings=mappings, sender_id="5412345000013")
    sender = _Sender()
    dispatcher = OutboundDispatcher(store, archive, senders={"folder": sender},
                                    partner=partners.get, max_attempts=1)
    distributor = PriceListDistributor(store, archive, lambda: partners.values(), intake)

    class World:
        pass

    w: Any = World()
    w.store, w.archive, w.distributor, w.dispatcher, w.sender, w.partners = (
        store, archive, distributor, dispatcher, sender, partners)
    yield w
    store.close()


def _sent_document(w: Any, tid: str) -> dict[str, Any]:
    """The canonical document a copy was rendered from."""
    return json.loads(w.archive.get(w.store.get_transmission(tid).sha256))


def _by_partner(results: list[Any]) -> dict[str, Any]:
    return {r.partner_id: r for r in results}


def _parent_of(w: Any, origin: str, ref: str, list_id: str = "main") -> Any:
    return w.store.outbound_by_ref(origin, f"list:{list_id}:{ref}")


def test_first_list_whole_to_all_then_changes_only(world: Any) -> None:
    w = world
    assert [p.id for p in w.distributor.subscribers("main")] == ["csvco", "delta", "edi"]
    first = _by_partner(w.distributor.distribute(
        _price_list("PL-1", V1, valid_from="2026-12-01"), list_id="main", origin="erp",
        ref="m1"))
    assert set(first) == {"csvco", "delta", "edi"}
    assert all(r.status == "RENDERED" for r in first.values())
    for r in first.values():  # every copy is the whole list, named for its partner
        doc = _sent_document(w, r.transmission_id)
        assert doc["partner"] == r.partner_id and len(doc["items"]) == 4
    assert first["edi"].mapping == "fake-pricat" and first["csvco"].mapping == "fake-pricelist-csv"
    parent = _parent_of(w, "erp", "m1")
    assert parent.status == "PROCESSED" and parent.partner_id is None
    assert json.loads(w.archive.get(parent.sha256))["price_list_number"] == "PL-1"
    events = {e["event"]: e["detail"] for e in w.store.events(parent.id)}
    assert "distributed to 3 partners" in events["distributed"]
    assert "holds no version" in events["price-list-whole"]  # delta: nothing held yet
    assert w.dispatcher.deliver_pending() == 3

    second = _by_partner(w.distributor.distribute(
        _price_list("PL-2", V2, valid_from="2026-12-15"), list_id="main", origin="erp",
        ref="m2"))
    for pid in ("edi", "csvco"):
        assert len(_sent_document(w, second[pid].transmission_id)["items"]) == 4
    diff = _sent_document(w, second["delta"].transmission_id)
    assert diff["function"] == "change" and diff["price_list_number"] == "PL-2"
    got = {(i.get("gtin") or i.get("item_code")): i for i in diff["items"]}
    assert {k: i["action"] for k, i in got.items()} == {
        "4000000000028": "change", "C-3": "delete", "4000000000035": "add"}
    assert got["4000000000028"]["prices"][0]["amount"] == "21.50"
    assert got["C-3"]["valid_to"] == "2026-12-15"
    assert got["4000000000035"]["valid_from"] == "2026-12-15"
    assert [i["line_number"] for i in diff["items"]] == ["1", "2", "3"]
    w.dispatcher.deliver_pending()
    edi = w.sender.got["delta"][-1].decode()
    assert "BGM+9+PL-2+4" in edi
    assert "LIN+1+3+4000000000028" in edi and "LIN+2+1+4000000000035" in edi
    assert "LIN+3+2+C-3\nPRI+AAA:30.00\nDTM+206:2026-12-15" in edi
    assert w.sender.got["csvco"][-1].decode().count("\n") == 5  # header and 4 items

    standings = {(s.list_id, s.partner_id): s
                 for s in price_list_standings(w.store, w.partners.values())}
    delta = standings[("main", "delta")]
    assert delta.holding.sent_number == "PL-2" and delta.holding.held_number == "PL-2"
    assert delta.mode == "changes" and not delta.failures
    assert standings[("other", "csvco")].holding is None  # subscribed, nothing sent yet
    assert not standings[("main", "off")].enabled


def test_a_failed_delivery_leaves_the_older_version_held(world: Any) -> None:
    w = world
    w.distributor.distribute(_price_list("PL-1", V1, valid_from="2026-12-01"),
                             list_id="main", origin="erp", ref="m1")
    w.dispatcher.deliver_pending()
    w.sender.refuse = {"delta"}
    second = _by_partner(w.distributor.distribute(
        _price_list("PL-2", V2, valid_from="2026-12-15"), list_id="main", origin="erp",
        ref="m2"))
    w.dispatcher.deliver_pending()
    failed = w.store.get_transmission(second["delta"].transmission_id)
    assert failed.status == "FAILED" and failed.stage == "deliver"
    w.store.settle_price_list_holdings()
    holding = w.store.price_list_holding("delta", "main")
    assert (holding.sent_number, holding.held_number) == ("PL-2", "PL-1")

    # PL-3 changes B again: the difference is against PL-1, which delta holds.
    w.sender.refuse = set()
    v3 = [("gtin", "4000000000011", "10.00"), ("gtin", "4000000000028", "22.00"),
          ("supplier_article", "SA-4", "40.00"), ("gtin", "4000000000035", "5.00")]
    third = _by_partner(w.distributor.distribute(
        _price_list("PL-3", v3, valid_from="2027-01-01"), list_id="main", origin="erp",
        ref="m3"))
    diff = _sent_document(w, third["delta"].transmission_id)
    assert sorted((i.get("gtin") or i.get("item_code"), i["action"]) for i in diff["items"]) \
        == [("4000000000028", "change"), ("4000000000035", "add"), ("C-3", "delete")]
    standing = {s.partner_id: s for s in price_list_standings(w.store, w.partners.values(),
                                                              "main")}["delta"]
    assert [f.transmission_id for f in standing.failures] == [second["delta"].transmission_id]
    assert standing.failures[0].stage == "deliver"
    w.dispatcher.deliver_pending()
    assert w.store.price_list_holding("delta", "main").held_number == "PL-1"  # not settled yet
    w.store.settle_price_list_holdings(list_id="main")
    assert w.store.price_list_holding("delta", "main").held_number == "PL-3"

    # The same items again: nothing for delta, the whole list for the others.
    fourth = _by_partner(w.distributor.distribute(
        _price_list("PL-4", v3, valid_from="2027-02-01"), list_id="main", origin="erp",
        ref="m4"))
    assert set(fourth) == {"edi", "csvco"}
    parent = _parent_of(w, "erp", "m4")
    details = [e["detail"] for e in w.store.events(parent.id)]
    assert any("delta: nothing changed since PL-3" in d for d in details)
    assert any("nothing changed for delta" in d for d in details)


def test_a_late_receipt_of_an_older_version_does_not_move_the_holding_back(
        world: Any) -> None:
    w = world
    one = _by_partner(w.distributor.distribute(
        _price_list("PL-1", V1, valid_from="2026-12-01"), list_id="main", origin="erp",
        ref="m1"))
    two = _by_partner(w.distributor.distribute(
        _price_list("PL-2", V2, valid_from="2026-12-15"), list_id="main", origin="erp",
        ref="m2"))
    for result, held in ((two, "PL-2"), (one, "PL-2")):  # PL-1's receipt comes last
        [row] = w.store.outbound_of(result["delta"].transmission_id)
        w.store.mark_outbound_sent(row.id, "posted", delivered=True)
        w.store.settle_price_list_holdings()
        assert w.store.price_list_holding("delta", "main").held_number == held


def test_a_redelivered_message_sends_nothing_twice(world: Any) -> None:
    w = world
    data = _price_list("PL-1", V1, valid_from="2026-12-01")
    one = w.distributor.distribute(data, list_id="main", origin="erp", ref="m1")
    two = w.distributor.distribute(data, list_id="main", origin="erp", ref="m1")
    assert all(r.repeat for r in two) and not any(r.repeat for r in one)
    assert sorted(r.transmission_id for r in one) == sorted(r.transmission_id for r in two)
    assert len(w.store.pending_outbound()) == 3


def test_an_interrupted_distribution_carries_on(world: Any) -> None:
    import datetime as dt

    w = world
    data = _price_list("PL-1", V1, valid_from="2026-12-01")
    tid = w.store.record_outbound_received(
        channel="erp", channel_ref="list:main:m1", filename=None, size=len(data),
        sha256=w.archive.put(data), partner_id=None, detail="test")
    # One copy went before the crash.
    w.distributor.intake.accept(json.dumps(dict(json.loads(data), partner="edi")).encode(),
                                origin="price-list", ref=f"main:{tid}:edi", partner="edi",
                                doc_type="price-list")
    w.distributor._clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)
    assert w.distributor.resume() == 1
    assert w.store.get_transmission(tid).status == "PROCESSED"
    assert len(w.store.pending_outbound()) == 3  # edi's copy not made twice


@pytest.mark.parametrize("data, list_id, stage, words", [
    (_price_list("PL-1", V1, valid_from="2026-12-01"), "ghost", "partner",
     "no enabled partner subscribes to price list 'ghost'"),
    (b"{nope", "main", "parse", "not JSON"),
    (json.dumps({"schema": "edigw.invoice/1"}).encode(), "main", "validate",
     "must be edigw.price-list/1"),
    (json.dumps({"items": []}).encode(), "main", "validate", "price_list_number"),
])
def test_a_list_that_cannot_go_fails_its_distribution(world: Any, data: bytes, list_id: str,
                                                      stage: str, words: str) -> None:
    w = world
    [result] = w.distributor.distribute(data, list_id=list_id, origin="erp", ref="x")
    assert result.failed and result.stage == stage and words in result.reason
    parent = _parent_of(w, "erp", "x", list_id)
    assert (parent.status, parent.stage, parent.id) == ("FAILED", stage, result.transmission_id)
    assert w.archive.get(parent.sha256) == data
    assert w.store.pending_outbound() == []
    [again] = w.distributor.distribute(data, list_id=list_id, origin="erp", ref="x")
    assert again.repeat and again.transmission_id == parent.id


def test_a_list_id_that_is_not_one_is_refused_before_anything_is_recorded(
        world: Any) -> None:
    with pytest.raises(OutboundRefused):
        world.distributor.distribute(b"{}", list_id="a:b", origin="erp", ref="x")


def test_a_list_in_parts_goes_whole_even_to_changes_partners(world: Any) -> None:
    w = world
    data = _price_list("PL-1", V1, valid_from="2026-12-01", part_number=1, part_count=2)
    results = _by_partner(w.distributor.distribute(data, list_id="main", origin="erp",
                                                   ref="p1"))
    assert len(_sent_document(w, results["delta"].transmission_id)["items"]) == 4
    assert w.store.price_list_holding("delta", "main") is None  # parts are not versions


def test_items_without_a_key_send_the_whole_list(world: Any) -> None:
    w = world
    w.distributor.distribute(_price_list("PL-1", V1, valid_from="2026-12-01"),
                             list_id="main", origin="erp", ref="m1")
    w.dispatcher.deliver_pending()
    doc = json.loads(_price_list("PL-2", V2, valid_from="2026-12-15"))
    doc["items"].append({"description": "no key", "prices": []})
    results = _by_partner(w.distributor.distribute(json.dumps(doc).encode(), list_id="main",
                                                   origin="erp", ref="m2"))
    assert len(_sent_document(w, results["delta"].transmission_id)["items"]) == 5
    parent = _parent_of(w, "erp", "m2")
    assert any("item 5 has no gtin" in (e["detail"] or "") for e in w.store.events(parent.id))


def test_a_100k_item_list_diffs_in_seconds() -> None:
    def big(prices: dict[int, str], gone: set[int], extra: int) -> bytes:
        items = [{"gtin": f"{n:013d}", "description": f"article {n}",
                  "prices": [{"type": "AAA", "amount": prices.get(n, "1.00")}]}
                 for n in range(100_000) if n not in gone]
        items += [{"item_code": f"NEW-{n}", "prices": [{"type": "AAA", "amount": "2.00"}]}
                  for n in range(extra)]
        return json.dumps({"schema": "edigw.price-list/1", "price_list_number": "BIG",
                           "issue_date": "2026-12-01", "items": items}).encode()

    old_data = big({}, set(), 0)
    new_data = big({n: "1.50" for n in range(0, 100_000, 1000)}, set(range(5, 500, 5)), 7)
    start = time.perf_counter()
    old, new = parse_price_list(old_data), parse_price_list(new_data)
    items = difference(keyed(new.raw["items"], new.model.items),
                       keyed(old.raw["items"], old.model.items), new.effective)
    took = time.perf_counter() - start
    actions = [i["action"] for i in items]
    assert (actions.count("change"), actions.count("delete"), actions.count("add")) == \
        (100, 99, 7)
    assert took < 15, f"{took:.1f} s"


def test_with_the_real_eancom_and_csv_mappings(tmp_path: Path) -> None:
    """The changes go out as EANCOM PRICAT (BGM 1225 = 4, LIN 1229 = 1/2/3), the whole list
    as the CSV article master."""
    from gateway.channels.outbound import FolderSender

    root = Path(__file__).resolve().parents[2]
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.sqlite3'}")
    archive = Archive(tmp_path / "archive")
    partners = {
        "edi": Partner(id="edi", name="EDI", outbound=PartnerOutbound(
            formats={"price-list": "eancom-pricat-d01b"}, recipient_id="5400000000003",
            price_lists=["main"], price_list_mode="changes", folder=tmp_path / "out" / "edi")),
        "csv": Partner(id="csv", name="CSV", outbound=PartnerOutbound(
            formats={"price-list": "csv"}, price_lists=["main"],
            folder=tmp_path / "out" / "csv")),
    }
    intake = OutboundIntake(store=store, archive=archive, partners=partners.get,
                            mappings=OutboundMappings.load(root / "mappings"),
                            sender_id="5412345000013")
    dispatcher = OutboundDispatcher(store, archive, senders={"folder": FolderSender(tmp_path)},
                                    partner=partners.get)
    distributor = PriceListDistributor(store, archive, lambda: partners.values(), intake)

    def publish(number: str, prices: dict[str, str], valid_from: str) -> None:
        doc = {"schema": "edigw.price-list/1", "price_list_number": number,
               "issue_date": "2026-12-01", "valid_from": valid_from, "currency": "EUR",
               "items": [{"gtin": gtin, "description": f"article {gtin}",
                          "prices": [{"type": "AAE", "specification": "RTP", "amount": p}]}
                         for gtin, p in prices.items()]}
        results = distributor.distribute(json.dumps(doc).encode(), list_id="main",
                                         origin="erp", ref=number)
        assert [r.status for r in results] == ["RENDERED", "RENDERED"], results
        dispatcher.deliver_pending()

    try:
        publish("PL-1", {"4000000000011": "1.99", "4000000000028": "2.99",
                         "4000000000035": "3.99"}, "2026-12-01")
        publish("PL-2", {"4000000000011": "1.99", "4000000000028": "3.49",
                         "4000000000042": "4.99"}, "2026-12-15")
        edi = sorted((tmp_path / "out" / "edi").iterdir())[-1].read_text()
        assert "BGM+9+PL-2+4'" in edi
        assert "LIN+1+3+4000000000028:SRV'" in edi and "LIN+2+1+4000000000042:SRV'" in edi
        assert "LIN+3+2+4000000000035:SRV'" in edi and "DTM+206:20261215:102'" in edi
        assert "4000000000011" not in edi  # unchanged: left out
        csv = sorted((tmp_path / "out" / "csv").iterdir())[-1].read_text("iso-8859-1")
        assert len(csv.strip().splitlines()) == 4  # header and the whole list
        store.settle_price_list_holdings()
        assert store.price_list_holding("edi", "main").held_number == "PL-2"
    finally:
        store.close()
