"""``edigw serve`` answers HTTP: /healthz always, /readyz only while store and broker are
there (RabbitMQ reached through a proxy the test cuts)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.bus.connect import host_port
from tests.integration.e2e import Workspace
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(rabbit_url) -> Iterator[TcpProxy]:
    with TcpProxy(*host_port(rabbit_url)) as proxy:
        yield proxy


def test_healthz_and_readyz_follow_the_broker(tmp_path, store_url, proxy):
    with Workspace.create(tmp_path / "gw", store_url,
                          broker_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F") as ws:
        service = ws.serve()
        url = service.http_url
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
        service.wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, 20,
                           "ready once the publisher is connected")
        ready = httpx.get(url + "/readyz").json()
        assert ready["status"] == "ready"
        assert ready["checks"] == {"store": "ok", "broker": "ok", "processing": "ok",
                                   "instance": "ok"}
        # This instance, its heartbeat and the leases it holds (it is alone: all of them).
        (me,) = ready["instances"]
        assert me["id"] == ready["instance"] and me["heartbeat_age_s"] < 15
        assert set(me["leases"]) == set(ready["leases_held"]) >= {"outbound", "tracker"}

        proxy.cut()
        service.wait_for_log("broker_connection_lost", 20)
        r = httpx.get(url + "/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["store"] == "ok"
        assert r.json()["checks"]["broker"].startswith("not connected")
        assert httpx.get(url + "/healthz").status_code == 200, "alive while not ready"

        proxy.restore()
        service.wait_until(lambda: httpx.get(url + "/readyz").status_code == 200, 30,
                           "ready again once the broker is back")
        # No AS2 or SMS configured: their routes do not exist.
        assert httpx.post(url + "/as2", content=b"x").status_code == 404
        assert httpx.post(url + "/sms/twilio", content=b"x").status_code == 404
