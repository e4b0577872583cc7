"""A RabbitMQ cluster without a broker: URL lists in the settings, round-robin over the nodes
in the publisher, events publisher and ack consumer, each node's check, queue types."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pika.exceptions as px
import pytest

from gateway.bus import acks as acks_module
from gateway.bus import events as events_module
from gateway.bus import publisher as publisher_module
from gateway.bus.acks import AckConsumer
from gateway.bus.connect import Rotation, check_broker, check_nodes, connect_any, describe_nodes
from gateway.bus.events import EventPublisher
from gateway.bus.publisher import OutboxPublisher
from gateway.bus.settings import BusSettings
from gateway.bus.topology import precondition_hint, queue_arguments, type_arguments
from gateway.config import load_settings
from gateway.core.errors import BrokerError, ConfigError
from tests.integration.rabbit import sqlite_store


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url(port: int, password: str = "secret") -> str:
    return f"amqp://edi:{password}@127.0.0.1:{port}/%2F"


# -- the rotation -------------------------------------------------------------------------

def test_rotation_goes_round_the_nodes_first_node_first():
    nodes = Rotation(["amqp://a/", "amqp://b/", "amqp://c/"])
    assert nodes.current == "amqp://a/"  # before any attempt
    assert [nodes.next() for _ in range(7)] == [
        "amqp://a/", "amqp://b/", "amqp://c/", "amqp://a/", "amqp://b/", "amqp://c/", "amqp://a/"]
    assert nodes.current == "amqp://a/" and len(nodes) == 3


def test_rotation_of_one_url_is_always_that_url():
    nodes = Rotation("amqp://only/")
    assert {nodes.next() for _ in range(3)} == {"amqp://only/"}
    with pytest.raises(ValueError):
        Rotation([])


# -- settings -----------------------------------------------------------------------------

def test_bus_settings_url_is_the_first_of_urls_and_one_url_is_a_list_of_one():
    one = BusSettings(url="amqp://a/")
    assert one.urls == ("amqp://a/",) and one.url == "amqp://a/"
    many = BusSettings(urls=["amqp://a/", "amqp://b/"])
    assert many.urls == ("amqp://a/", "amqp://b/") and many.url == "amqp://a/"
    assert BusSettings().urls == (BusSettings().url,)
    # replace(url=…) means that one broker (the tests' proxies rely on it) …
    assert dataclasses.replace(many, url="amqp://proxy/").urls == ("amqp://proxy/",)
    # … and a url among urls changes nothing.
    assert dataclasses.replace(many, url="amqp://b/").urls == ("amqp://a/", "amqp://b/")
    assert BusSettings().queue_type == "quorum"
    with pytest.raises(ValueError, match="queue_type"):
        BusSettings(queue_type="stream")


def test_safe_urls_mask_every_password():
    s = BusSettings(urls=[url(1, "pw1"), url(2, "pw2")])
    assert "pw1" not in s.safe_urls and "pw2" not in s.safe_urls
    assert s.safe_urls == "amqp://edi:***@127.0.0.1:1/%2F, amqp://edi:***@127.0.0.1:2/%2F"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_broker_urls_in_the_settings_file(tmp_path):
    f = write(tmp_path / "g.toml", '[broker]\nurls = ["amqp://n1/", "amqp://n2/", "amqp://n3/"]\n'
                                   'queue_type = "classic"\n')
    b = load_settings(f, env={}).broker
    assert b.urls == ["amqp://n1/", "amqp://n2/", "amqp://n3/"] and b.url == "amqp://n1/"
    assert b.queue_type == "classic"
    b = load_settings(write(tmp_path / "o.toml", '[broker]\nurl = "amqp://one/"\n'), env={}).broker
    assert b.urls == ["amqp://one/"] and b.queue_type == "quorum"
    b = load_settings(write(tmp_path / "s.toml", '[broker]\nurls = "amqp://n1/, amqp://n2/"\n'),
                      env={}).broker
    assert b.urls == ["amqp://n1/", "amqp://n2/"]


def test_broker_urls_from_the_environment(tmp_path):
    f = write(tmp_path / "g.toml", '[broker]\nurls = ["amqp://n1/", "amqp://n2/"]\n')
    b = load_settings(f, env={"EDIGW_BROKER_URLS": "amqp://e1/,amqp://e2/ , amqp://e3/"}).broker
    assert b.urls == ["amqp://e1/", "amqp://e2/", "amqp://e3/"] and b.url == "amqp://e1/"
    # EDIGW_BROKER_URL still overrides whatever the file says, a list of nodes too.
    b = load_settings(f, env={"EDIGW_BROKER_URL": "amqp://single/"}).broker
    assert b.urls == ["amqp://single/"] and b.url == "amqp://single/"
    b = load_settings(write(tmp_path / "u.toml", '[broker]\nurl = "amqp://file/"\n'),
                      env={"EDIGW_BROKER_URLS": "amqp://e1/,amqp://e2/"}).broker
    assert b.urls == ["amqp://e1/", "amqp://e2/"]
    b = load_settings(None, env={"EDIGW_BROKER_URLS": "amqp://e1/,amqp://e2/"}).broker
    assert b.urls == ["amqp://e1/", "amqp://e2/"]


@pytest.mark.parametrize(("text", "words"), [
    ('url = "amqp://a/"\nurls = ["amqp://b/"]', "not both"),
    ("urls = []", "at least one"),
    ('urls = ["amqp://a/", "http://u:pw@b/"]', "amqp://"),
    ('urls = ["amqp://a/", "amqp://a/"]', "named twice"),
    ('queue_type = "stream"', "quorum"),
])
def test_bad_broker_urls_are_refused(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words) as e:
        load_settings(write(tmp_path / "g.toml", f"[broker]\n{text}\n"), env={})
    assert "pw" not in str(e.value)


def test_the_gateway_hands_the_urls_and_queue_type_to_the_bus(tmp_path):
    from gateway.app import bus_settings

    f = write(tmp_path / "g.toml", '[broker]\nurls = ["amqp://n1/", "amqp://n2/"]\n'
                                   'queue_type = "classic"\n')
    bus = bus_settings(load_settings(f, env={}))
    assert bus.urls == ("amqp://n1/", "amqp://n2/") and bus.url == "amqp://n1/"
    assert bus.queue_type == "classic"


# -- queue types --------------------------------------------------------------------------

def test_queue_arguments_follow_the_queue_type():
    quorum = BusSettings()
    assert queue_arguments(quorum) == {"x-queue-type": "quorum",
                                       "x-dead-letter-exchange": quorum.dead_letter_exchange}
    classic = BusSettings(queue_type="classic")
    assert queue_arguments(classic)["x-queue-type"] == "classic"
    assert type_arguments("quorum") == {"x-queue-type": "quorum"}


def test_precondition_failed_on_the_queue_type_says_what_to_do():
    text = ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'erp.orders' in "
            "vhost '/': received the value 'quorum' of type 'longstr' but current is none")
    hint = precondition_hint("erp.orders", "quorum", text)
    assert "another type" in hint and "queue_type = 'classic'" in hint
    assert "rabbitmqctl delete_queue erp.orders" in hint
    other = precondition_hint("erp.orders", "classic", "inequivalent arg 'x-max-length'")
    assert "other arguments" in other


# -- each node's reachability ---------------------------------------------------------------

def test_check_nodes_names_each_node_masked_and_in_parallel():
    ports = [closed_port(), closed_port()]
    checked = check_nodes([url(p) for p in ports], timeout=2.0)
    assert [u for u, _ in checked] == [f"amqp://edi:***@127.0.0.1:{p}/%2F" for p in ports]
    assert all(problem == "connection refused" for _, problem in checked)
    lines = describe_nodes([url(p) for p in ports], timeout=2.0)
    assert lines[0] == f"amqp://edi:***@127.0.0.1:{ports[0]}/%2F NOT reachable (connection refused)"
    problem = check_broker([url(p) for p in ports], timeout=2.0)
    assert problem is not None and problem.startswith("no broker node reachable: ")
    assert "secret" not in problem and str(ports[1]) in problem
    one = check_broker(url(ports[0]), timeout=2.0)
    assert one == f"broker not reachable at amqp://edi:***@127.0.0.1:{ports[0]}/%2F " \
                  "(connection refused)"


def test_check_nodes_takes_one_timeout_whatever_the_number_of_nodes():
    # Nodes that accept TCP but never answer AMQP: each check waits its whole timeout.
    servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    try:
        started = time.monotonic()
        checked = check_nodes([url(s.getsockname()[1]) for s in servers], timeout=1.0)
        assert time.monotonic() - started < 2.5
        assert all(problem is not None for _, problem in checked)
    finally:
        for s in servers:
            s.close()


def test_connect_any_names_every_node_when_none_answers():
    ports = [closed_port(), closed_port()]
    with pytest.raises(BrokerError) as e:
        connect_any([url(p) for p in ports], timeout=1.0)
    assert "no broker node reachable" in str(e.value) and "secret" not in str(e.value)
    assert all(str(p) in str(e.value) for p in ports)


# -- reconnection to the next node ---------------------------------------------------------

def ports_tried(params: list[Any]) -> list[int]:
    return [p.port for p in params]


def test_outbox_publisher_tries_the_next_node_at_each_connection_attempt(tmp_path, monkeypatch):
    """A failed connect moves on to the next node, round-robin, with the back-off."""
    attempts: list[Any] = []

    class Refusing:
        def __init__(self, params: Any, on_open_callback: Any, on_open_error_callback: Any,
                     on_close_callback: Any) -> None:
            attempts.append(params)
            self._error = on_open_error_callback
            self.ioloop = self
            self.is_closing = self.is_closed = False

        def start(self) -> None:
            self._error(self, px.AMQPConnectionError("refused"))

        def stop(self) -> None:
            pass

        def close(self) -> None:
            pass

        def add_callback_threadsafe(self, _callback: Any) -> None:
            pass

    monkeypatch.setattr(publisher_module.pika, "SelectConnection", Refusing)
    ports = [5901, 5902, 5903]
    settings = BusSettings(urls=[url(p) for p in ports], retry_initial=0.01, retry_max=0.02)
    store = sqlite_store(tmp_path / "s.sqlite3")
    publisher = OutboxPublisher(store, settings)
    publisher.start()
    try:
        deadline = time.monotonic() + 5
        while len(attempts) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        publisher.stop(timeout=1)
        store.close()
    assert ports_tried(attempts)[:7] == [5901, 5902, 5903, 5901, 5902, 5903, 5901]
    health = publisher.health
    assert not health.connected and health.node is not None and "***" in health.node
    assert health.last_error is not None and "secret" not in health.last_error


def test_ack_consumer_and_events_publisher_try_the_next_node(tmp_path, monkeypatch):
    attempts: list[Any] = []
    lock = threading.Lock()

    def refusing(params: Any) -> Any:
        with lock:
            attempts.append(params)
        raise px.AMQPConnectionError("refused")

    monkeypatch.setattr(acks_module.pika, "BlockingConnection", refusing)
    ports = [5911, 5912]
    store = sqlite_store(tmp_path / "s.sqlite3")

    @dataclasses.dataclass
    class Names:
        acks_exchange: str = "edi.acks"
        acks_queue: str = "edigw.acks"

    consumer = AckConsumer(store, [url(p) for p in ports], Names(), retry_initial=0.01,
                           retry_max=0.02)
    consumer.start()
    try:
        deadline = time.monotonic() + 5
        while len(attempts) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        consumer.stop(timeout=2)
    assert ports_tried(attempts)[:4] == [5911, 5912, 5911, 5912]
    assert consumer.health.node is not None and "secret" not in consumer.health.node

    attempts.clear()
    monkeypatch.setattr(events_module.pika, "BlockingConnection", refusing)
    events = EventPublisher(store, [url(p) for p in ports])
    assert events.url == url(5911) and events.urls == (url(5911), url(5912))
    for _ in range(3):
        with pytest.raises(px.AMQPConnectionError):
            events.publish_once()
    assert ports_tried(attempts) == [5911, 5912, 5911]
    store.close()


# -- the test cluster helper ------------------------------------------------------------------

def test_a_cluster_that_cannot_start_skips_or_fails_in_ci(tmp_path, monkeypatch):
    from tests.integration import rabbit_cluster

    def missing(name: str) -> str:
        raise rabbit_cluster.ClusterError(f"{name} is not installed")

    monkeypatch.setattr(rabbit_cluster, "_program", missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="in CI the cluster tests must run"):
        rabbit_cluster.start_or_skip(tmp_path)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="rabbitmq-server is not installed"):
        rabbit_cluster.start_or_skip(tmp_path)


def test_cluster_nodes_have_their_own_names_ports_and_files(tmp_path):
    from tests.integration.rabbit_cluster import RabbitCluster

    cluster = RabbitCluster(tmp_path, nodes=3, base_port=5681)
    assert [n.port for n in cluster.nodes] == [5681, 5682, 5683]
    assert [n.dist_port for n in cluster.nodes] == [25681, 25682, 25683]
    assert all(n.name.startswith(f"edigw{i + 1}-") and n.name.endswith("@localhost")
               for i, n in enumerate(cluster.nodes))
    assert cluster.urls[1] == "amqp://guest:guest@127.0.0.1:5682/%2F"
    env = cluster.nodes[0].env()
    assert env["RABBITMQ_NODENAME"] == cluster.node_names[0]
    assert env["RABBITMQ_CONF_ENV_FILE"].startswith(str(tmp_path))  # not /etc/rabbitmq
    assert env["RABBITMQ_MNESIA_BASE"].startswith(str(tmp_path))
    assert "rabbit@" not in " ".join(env.values())
    other = RabbitCluster(tmp_path, nodes=3)  # free ports: two clusters side by side
    assert set(other.node_names).isdisjoint(cluster.node_names)
