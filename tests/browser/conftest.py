"""The operator console in a real browser: Debian's chromium driven by Playwright (through
pytest-playwright, pointed at ``/usr/bin/chromium``: ``playwright install`` cannot download
here), against the gateway's HTTP app on loopback over a store a real pipeline filled.

Seeded once per session: the EANCOM samples under ``mappings/edifact`` ingested through the
folder channel's path (some partners known, some senders not: quarantined), one order that
fails validation, the tracker's check (which opens the failure alert), three users:
``ada`` (admin), ``otto`` (operator) and ``vera`` (viewer), two client users (``gina`` of
gouden, ``nils`` of noord) and one price list gouden subscribes to.

Screenshots go to ``$EDIGW_TEST_OUTPUT/screenshots`` (default: ``screenshots`` under pytest's
base temporary folder); the folder is printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = os.environ.get("EDIGW_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse battery staple"
USERS = {"ada": "admin", "otto": "operator", "vera": "viewer"}
#: Client users (the client portal), each bound to its partner.
CLIENTS = {"gina": "gouden", "nils": "noord"}
#: The price list gouden subscribes to, published once at seeding (CSV for gouden).
PRICE_LIST = ROOT / "mappings" / "outbound" / "csv" / "csv-pricelist-out.sample.json"
GOUDEN = "5401234000012"
FAILING_ORDER = "PO-BAD-7"


def _require_chromium() -> None:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return
    reason = f"chromium not found at {CHROMIUM} (Debian package chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; in CI a missing browser is a failure, not a skip")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """pytest-playwright launches this browser instead of a downloaded one."""
    _require_chromium()
    return {"executable_path": CHROMIUM, "headless": True,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]}


_SHOTS: list[Path] = []


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """``$EDIGW_TEST_OUTPUT/screenshots``, else ``screenshots`` under pytest's base temp."""
    base = os.environ.get("EDIGW_TEST_OUTPUT")
    folder = (Path(base) if base else tmp_path_factory.getbasetemp()) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    _SHOTS.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for folder in _SHOTS:
        terminalreporter.section("console screenshots")
        terminalreporter.write_line(f"{len(list(folder.glob('*.png')))} screenshots in {folder}")


def _profile(pid: str, name: str, unb: list[str], emails: list[str]) -> str:
    ids = ", ".join(f'{{ id = "{u}", qualifier = "14" }}' for u in unb)
    mails = ", ".join(f'"{e}"' for e in emails)
    return (f'id = "{pid}"\nname = "{name}"\n[identifiers]\nunb = [{ids}]\n'
            f"email = [{mails}]\n")


def failing_order() -> bytes:
    """The D96A sample carrying order FAILING_ORDER with a quantity that is not a number."""
    data = (ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi").read_bytes()
    return (data.replace(b"PO-2024-0107", FAILING_ORDER.encode())
            .replace(b"ICR0042", b"ICR0099").replace(b"QTY+21:40:BG", b"QTY+21:xx:BG"))


@dataclass
class Console:
    url: str
    gateway: object
    tmp: Path

    def ingest(self, data: bytes, filename: str) -> str:
        from gateway.core.ports import Incoming

        p = self.gateway.pipeline
        receipt = p.receive(Incoming(data=data, channel="folder", channel_ref=f"/in/{filename}",
                                     filename=filename))
        p.acknowledged([receipt], "moved to processed/")
        if receipt.needs_processing:
            p.process(receipt.transmission_id)
        return receipt.transmission_id


def build_console_app(gw: object):
    """The app exactly as ``edigw serve`` builds it: ``build_app`` with the gateway's console
    routes and state (the API at /api, the pages, /metrics, one PartnerAdmin)."""
    from gateway.http.server import build_app

    routes, state = gw.console_routes()
    return build_app(ready=gw.ready_checks(), routes=routes, state=state)


@pytest.fixture(scope="session")
def console(tmp_path_factory, browser_type_launch_args) -> Iterator[Console]:
    from gateway.app import Gateway
    from gateway.config import load_settings
    from gateway.http.server import HttpServer
    from gateway.tracker.engine import Tracker
    from gateway.web.auth import Users

    tmp = tmp_path_factory.mktemp("console")
    partners = tmp / "partners"
    partners.mkdir()
    (partners / "gouden.toml").write_text(_profile(
        "gouden", "De Gouden Aar", [GOUDEN], ["orders@gouden.example"])
        + '[outbound]\nformats = {price-list = "csv"}\nprice_lists = ["spring"]\n')
    (partners / "noord.toml").write_text(_profile(
        "noord", "Noord Retail", ["5401234000043"], ["edi@noord.example"]))
    (partners / "brouwer.toml").write_text(_profile(
        "brouwer", "Brouwer Supplies", ["4012345000009", "4012345000016"], []))
    (tmp / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "{partners}"\n'
        f'[store]\nurl = "sqlite:///{tmp / "edigw.sqlite3"}"\n'
        f'[archive]\npath = "{tmp / "archive"}"\nfsync = false\n'
        f'[outbound]\npath = "{tmp / "outbound"}"\n'
        '[tracker]\ntimezone = "Europe/Paris"\n')
    gw = Gateway.open(load_settings(tmp / "gateway.toml", env={}))
    c = Console(url="", gateway=gw, tmp=tmp)
    for sample in sorted((ROOT / "mappings" / "edifact").glob("*.sample.edi")):
        c.ingest(sample.read_bytes(), sample.name)
    # What the publisher does once the broker confirms (no broker in this test).
    gw.store.mark_published([i.outbox_id for i in gw.store.pending_outbox(1000)])
    c.ingest(failing_order(), "po-bad-7.edi")
    Tracker(gw.settings.tracker, gw.partners, gw.store).check()
    users = Users(gw.store)
    for name, role in USERS.items():
        users.create(name, PASSWORD, role)
    for name, partner in CLIENTS.items():
        users.create(name, PASSWORD, "client", partner_id=partner)
    gw.distributor.distribute(PRICE_LIST.read_bytes(), list_id="spring", origin="erp",
                              ref="seed")
    server = HttpServer(build_console_app(gw), port=0).start_in_thread()
    c.url = server.url
    yield c
    server.stop()
    gw.close()


@pytest.fixture(scope="session")
def base_url(console) -> str:
    """pytest-playwright's pages resolve relative URLs against the console."""
    return console.url
