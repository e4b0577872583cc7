"""The channel registry: one list of channel kinds gives the names partner profiles may
list, the settings sections of gateway.toml, and what each channel says of itself; the
shared receive-then-acknowledge keeps its order and its errors."""

from __future__ import annotations

import pytest

from gateway.channels.receive import Acknowledgement, receive_then_acknowledge
from gateway.channels.registry import CHANNEL_NAMES, CHANNELS, channel
from gateway.config import ConfigError, GatewaySettings, Partner, PartnerDirectory
from gateway.core.errors import StoreError
from gateway.core.ports import Incoming, Receipt


def test_channel_names_keep_their_order_and_validate_profiles() -> None:
    assert CHANNEL_NAMES == ("folder", "sftp", "email", "as2", "sms", "http", "portal")
    assert Partner(id="a", name="A", channels=list(CHANNEL_NAMES)).channels == list(
        CHANNEL_NAMES)
    with pytest.raises(ValueError, match="'folder', 'sftp', 'email', 'as2', 'sms', 'http' or 'portal'"):
        Partner(id="a", name="A", channels=["fax"])


def test_each_section_is_a_key_of_the_settings() -> None:
    fields = set(GatewaySettings.model_fields)
    for kind in CHANNELS:
        if kind.section is not None:
            assert set(kind.section.model_fields) <= fields, kind.name


def test_configured_and_summary_come_from_the_channels() -> None:
    settings = GatewaySettings.model_validate(
        {"as2": {}, "sms": {"twilio": {"auth_token": "t"}}})
    partners = PartnerDirectory([])
    rows = [row for kind in CHANNELS for row in kind.configured(settings, partners)]
    assert [r.channel for r in rows] == ["folder:var/inbox", "as2", "sms:twilio"]
    assert channel("sms").summary(settings, partners) == ["sms        POST /sms/twilio"]
    assert channel("as2").listens and not channel("folder").listens
    with pytest.raises(KeyError):
        channel("fax")


def test_a_bad_channel_name_in_a_profile_is_a_config_error(tmp_path) -> None:
    from gateway.config import load_partners

    (tmp_path / "a.toml").write_text('id = "a"\nname = "A"\nchannels = ["fax"]\n')
    with pytest.raises(ConfigError):
        load_partners(tmp_path, strict=True)


class _Receiver:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def receive_many(self, items: list[Incoming]) -> list[Receipt]:
        self.calls.append("receive")
        if self.fail:
            raise StoreError("store down")
        return [Receipt(f"t{i}") for i, _ in enumerate(items)]

    def acknowledged(self, receipts: list[Receipt], detail: str) -> None:
        self.calls.append(f"acknowledged {len(receipts)} {detail}")


def _items(n: int) -> list[Incoming]:
    return [Incoming(data=b"x", channel="test", channel_ref=str(i)) for i in range(n)]


def test_receive_comes_before_the_acknowledgement_and_processing() -> None:
    receiver = _Receiver()
    handed: list[str] = []

    def acknowledge(receipts: list[Receipt]) -> Acknowledgement[str]:
        receiver.calls.append("transport acknowledged")
        return Acknowledgement(acknowledged=receipts[:1], detail="moved", process=receipts,
                               answer="ok")

    ack = receive_then_acknowledge(receiver, _items(2), acknowledge,
                                   lambda rs: handed.extend(r.transmission_id for r in rs))
    assert receiver.calls == ["receive", "transport acknowledged", "acknowledged 1 moved"]
    assert handed == ["t0", "t1"] and ack.answer == "ok"


def test_a_failed_receive_acknowledges_nothing() -> None:
    receiver = _Receiver(fail=True)
    acknowledged: list[Receipt] = []

    def acknowledge(receipts: list[Receipt]) -> Acknowledgement[None]:
        acknowledged.extend(receipts)
        return Acknowledgement(acknowledged=receipts)

    with pytest.raises(StoreError):
        receive_then_acknowledge(receiver, _items(1), acknowledge, None)
    assert receiver.calls == ["receive"] and acknowledged == []


def test_duplicates_and_resumed_receipts_are_not_processed_again() -> None:
    class Repeats(_Receiver):
        def receive_many(self, items: list[Incoming]) -> list[Receipt]:
            return [Receipt("t0"), Receipt("t1", duplicate_of="t0"),
                    Receipt("t2", resumed=True)]

    handed: list[Receipt] = []
    receive_then_acknowledge(Repeats(), _items(3),
                             lambda rs: Acknowledgement(acknowledged=rs, process=rs),
                             handed.extend)
    assert [r.transmission_id for r in handed] == ["t0"]
