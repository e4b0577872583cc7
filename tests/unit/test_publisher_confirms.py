"""The confirm tracker and bus settings, without a broker."""

from __future__ import annotations

import pytest

from gateway.bus.confirms import ConfirmTracker
from gateway.bus.settings import BusSettings, mask_url


def _tracker_with(*outbox_ids: int) -> ConfirmTracker:
    tracker = ConfirmTracker()
    for outbox_id in outbox_ids:
        tracker.published(outbox_id, f"doc-{outbox_id}")
    return tracker


def test_delivery_tags_count_from_one_in_publish_order():
    """Tags are 1, 2, 3 … as RabbitMQ numbers them after confirm.select."""
    tracker = ConfirmTracker()
    assert [tracker.published(i, f"doc-{i}") for i in (40, 41, 42)] == [1, 2, 3]
    assert tracker.in_flight == 3


def test_single_ack_settles_only_its_tag():
    """An ack without ``multiple`` settles one message, even out of order."""
    tracker = _tracker_with(10, 11, 12)
    assert tracker.acked(2, multiple=False).published == [11]
    assert sorted(tracker.outbox_ids()) == [10, 12]


def test_multiple_ack_settles_every_tag_up_to_it():
    """``multiple=True`` confirms all outstanding tags up to and including the one named."""
    tracker = _tracker_with(10, 11, 12, 13)
    tracker.acked(2, multiple=False)
    assert tracker.acked(3, multiple=True).published == [10, 12]
    assert list(tracker.outbox_ids()) == [13]
    assert tracker.acked(4, multiple=True).published == [13]
    assert tracker.in_flight == 0


def test_ack_for_unknown_tag_settles_nothing():
    """A repeated or stray ack is harmless."""
    tracker = _tracker_with(10)
    tracker.acked(1, multiple=False)
    settled = tracker.acked(1, multiple=False)
    assert settled.published == [] and settled.unroutable == []


def test_return_before_ack_makes_the_row_unroutable_not_published():
    """basic.return precedes the ack: the ack then settles the row as unroutable."""
    tracker = _tracker_with(10, 11, 12)
    assert tracker.returned("doc-11", "NO_ROUTE: no queue bound for routing key order.x")
    settled = tracker.acked(3, multiple=True)
    assert settled.published == [10, 12]
    assert settled.unroutable == [(11, "NO_ROUTE: no queue bound for routing key order.x")]


def test_return_for_a_message_not_in_flight_is_reported():
    """A return that matches nothing is not silently attached to another row."""
    tracker = _tracker_with(10)
    assert not tracker.returned("doc-99", "NO_ROUTE")
    assert tracker.acked(1, multiple=False).published == [10]


def test_nack_hands_rows_back_for_retry():
    """A nack (single or multiple) returns the outbox ids to publish again."""
    tracker = _tracker_with(10, 11, 12)
    assert tracker.nacked(2, multiple=True) == [10, 11]
    assert tracker.nacked(3, multiple=False) == [12]
    assert tracker.in_flight == 0


def test_abandon_returns_every_unconfirmed_row():
    """When the channel dies, every unconfirmed row must be published again."""
    tracker = _tracker_with(10, 11, 12)
    tracker.acked(1, multiple=False)
    tracker.returned("doc-12", "NO_ROUTE")
    assert tracker.abandon() == [11, 12]
    assert tracker.in_flight == 0
    assert not tracker.returned("doc-12", "NO_ROUTE")


def test_settings_accept_a_mapping_of_queues():
    """Queues given as a mapping become hashable (name, keys) pairs."""
    settings = BusSettings(queues={"erp.orders": ["order.#"], "erp.invoices": "invoice.#"})
    assert settings.queues == (("erp.orders", ("order.#",)), ("erp.invoices", ("invoice.#",)))
    hash(settings)


def test_settings_refuse_a_zero_window():
    """A confirm window of 0 would never publish anything."""
    with pytest.raises(ValueError, match="confirm_window"):
        BusSettings(confirm_window=0)


@pytest.mark.parametrize(("url", "shown"), [
    ("amqp://guest:guest@localhost:5672/%2F", "amqp://guest:***@localhost:5672/%2F"),
    ("amqps://erp:s3cr%40t@mq.example.com/edi", "amqps://erp:***@mq.example.com/edi"),
    ("amqp://localhost/", "amqp://localhost/"),
])
def test_mask_url_hides_the_password(url, shown):
    """Logs and messages show the user and host, never the password."""
    assert mask_url(url) == shown
