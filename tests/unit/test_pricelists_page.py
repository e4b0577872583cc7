"""Who holds which price list: ``edigw price-lists``, ``GET /api/price-lists`` and the
console page ``/price-lists`` (behind a login; failed copies linked to their transmissions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from gateway.app import Gateway
from gateway.channels.pricelists import PriceListDistributor
from gateway.cli import main
from gateway.config import GatewaySettings, PartnerDirectory, load_partners
from gateway.formats.render import OutboundMappings
from gateway.http.server import build_app
from gateway.web.auth import Users
from tests.unit.test_pricelist_distribution import V1, V2, _CsvLike, _price_list

ROOT = Path(__file__).resolve().parents[2]
PARTNERS = {
    "acme": '[outbound]\nformats = {price-list = "csv"}\nprice_lists = ["spring"]\n',
    "beta": '[outbound]\nprice_lists = ["spring"]\nprice_list_mode = "changes"\n',  # no format
}


@pytest.fixture
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "partners").mkdir()
    for pid, outbound in PARTNERS.items():
        (tmp_path / "partners" / f"{pid}.toml").write_text(
            f'id = "{pid}"\nname = "{pid.title()}"\n{outbound}', encoding="utf-8")
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n[archive]\npath = "var/archive"\n')
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": "sqlite:///var/edigw.sqlite3"},
                               archive={"path": tmp_path / "var" / "archive"})
    gateway = Gateway.open(settings, partners=load_partners(tmp_path / "partners"))
    gateway.intake.mappings = OutboundMappings({"fake-pricelist-csv": _CsvLike()})
    distributor = PriceListDistributor(gateway.store, gateway.archive,
                                       lambda: list(gateway.partners), gateway.intake)
    for n, items in ((1, V1), (2, V2)):
        results = distributor.distribute(_price_list(f"SPRING-{n}", items,
                                                     valid_from=f"2027-0{n}-01"),
                                         list_id="spring", origin="erp", ref=f"m{n}")
        for r in results:
            for row in gateway.store.outbound_of(r.transmission_id):
                if n == 1:
                    gateway.store.mark_outbound_sent(row.id, "written", delivered=True)
    users = Users(gateway.store)
    users.create("vera", "a-long-enough-password", "viewer")
    yield gateway
    gateway.close()


def _failed_copy(gateway: Any, partner: str) -> list[str]:
    return [c.transmission_id for c in gateway.store.failed_price_list_copies("spring")
            if c.partner_id == partner]


def test_the_api_and_the_page_show_versions_and_failed_copies(gw: Any) -> None:
    routes, state = gw.console_routes()
    with TestClient(build_app(routes=routes, state=state)) as client:
        assert client.get("/api/price-lists").status_code == 401
        page = client.get("/price-lists", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        r = client.post("/api/login", json={"username": "vera",
                                            "password": "a-long-enough-password"})
        assert r.status_code == 200
        shown = {s["partner_id"]: s for s in client.get("/api/price-lists").json()["items"]}
        assert shown["acme"]["sent"]["number"] == "SPRING-2"
        assert shown["acme"]["held"]["number"] == "SPRING-1"  # SPRING-2 not delivered yet
        assert shown["beta"]["sent"] is None and shown["beta"]["mode"] == "changes"
        failed = _failed_copy(gw, "beta")
        assert len(failed) == 2
        assert [f["transmission_id"] for f in shown["beta"]["failed"]] == failed
        assert shown["beta"]["failed"][0]["stage"] == "mapping"
        assert client.get("/api/price-lists", params={"list": "autumn"}).json()["total"] == 0
        only = client.get("/api/price-lists", params={"partner_id": "beta"}).json()
        assert [s["partner_id"] for s in only["items"]] == ["beta"]

        html = client.get("/price-lists").text
        assert 'id="list-spring"' in html and ">Price lists</a>" in html
        assert f'<a href="/transmissions/{failed[0]}"' in html
        row = html.split('id="pl-spring-acme"')[1].split("</tr>")[0]
        assert ">SPRING-2</a>" in row and ">SPRING-1</a>" in row


def test_the_cli_lists_the_same(gw: Any) -> None:
    run = CliRunner().invoke(main, ["--config", "gateway.toml", "price-lists", "--json"])
    assert run.exit_code == 0, run.output
    shown = {s["partner"]: s for s in json.loads(run.output)}
    assert (shown["acme"]["sent"]["number"], shown["acme"]["held"]["number"]) == \
        ("SPRING-2", "SPRING-1")
    assert len(shown["beta"]["failed"]) == 2
    text = CliRunner().invoke(main, ["--config", "gateway.toml", "price-lists",
                                     "--list", "spring"]).output
    assert "acme" in text and "SPRING-2" in text and "failed deliveries:" in text
    assert _failed_copy(gw, "beta")[0] in text
    none = CliRunner().invoke(main, ["--config", "gateway.toml", "price-lists", "--list", "x"])
    assert none.output.startswith("no price list")


def test_an_empty_directory_shows_nothing(tmp_path: Path) -> None:
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gateway = Gateway.open(settings, partners=PartnerDirectory([]))
    try:
        Users(gateway.store).create("vera", "a-long-enough-password", "viewer")
        routes, state = gateway.console_routes()
        with TestClient(build_app(routes=routes, state=state)) as client:
            client.post("/api/login", json={"username": "vera",
                                            "password": "a-long-enough-password"})
            assert "No price list is subscribed to" in client.get("/price-lists").text
            assert client.get("/api/price-lists").json()["items"] == []
    finally:
        gateway.close()
