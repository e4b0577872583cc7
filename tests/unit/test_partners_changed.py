"""A partner changed in the console reaches everything running: the pipeline, the outbound
lookup, mailboxes, the AS2/SMS endpoints and the SFTP pollers (a disabled partner is no
longer polled; new credentials are used from the next poll)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.app import Gateway
from gateway.channels.sftp.channel import SftpChannel
from gateway.config import GatewaySettings, Partner, PartnerDirectory, SftpSettings

ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def _partner(enabled: bool = True, user: str = "edi") -> Partner:
    return Partner(id="acme", name="Acme", enabled=enabled, sftp=SftpSettings(
        host="sftp.acme.test", user=user, password="x", host_key=KEY, poll_interval=0.05))


class Recorder:
    def __init__(self) -> None:
        self.polls = 0

    def __call__(self, settings: SftpSettings):
        self.polls += 1
        raise OSError(f"no server ({settings.user})")


def test_partners_changed_reaches_pipeline_endpoints_and_pollers(tmp_path):
    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    gw = Gateway.open(settings, partners=PartnerDirectory([_partner()]))
    try:
        connect = Recorder()
        channel = SftpChannel(_partner(), receiver=gw.pipeline, records=None,
                              outcomes=gw.store, on_received=lambda r: None, connect=connect, retry_initial=0.01,
                              retry_max=0.01, partners=gw.partners)
        channel._record_failed = lambda error: None  # no health records in this test

        class Endpoint:
            """A holder of a cache derived from profiles, as the AS2 endpoint's certificates:
            it asks the directory's version."""

            def __init__(self) -> None:
                self.partners = gw.partners
                self.version = gw.partners.version
                self._partner_certs = {"acme": "old"}

            def certs(self) -> dict:
                if self.version != self.partners.version:
                    self.version, self._partner_certs = self.partners.version, {}
                return self._partner_certs

        endpoint = Endpoint()

        new = PartnerDirectory([_partner(user="edi2")])
        gw.partners_changed(new)
        assert gw.partners.get("acme") is new.get("acme")
        assert gw.pipeline.partners.get("acme") is new.get("acme")
        assert gw.outbound.partner("acme").sftp.user == "edi2"
        assert endpoint.partners.get("acme") is new.get("acme") and endpoint.certs() == {}
        channel.follow()  # what its loop does before each poll
        assert channel.settings.user == "edi2" and channel.active

        async def polls_while(directory: PartnerDirectory | None, seconds: float) -> int:
            if directory is not None:
                gw.partners_changed(directory)
            before = connect.polls
            stop = asyncio.Event()
            task = asyncio.create_task(channel.run(stop))
            await asyncio.sleep(seconds)
            stop.set()
            await asyncio.wait_for(task, 5)
            return connect.polls - before

        assert asyncio.run(polls_while(None, 0.3)) > 0
        assert asyncio.run(polls_while(PartnerDirectory([_partner(enabled=False)]), 0.3)) == 0
        assert not channel.active
        assert asyncio.run(polls_while(PartnerDirectory([_partner()]), 0.3)) > 0
        assert asyncio.run(polls_while(PartnerDirectory([]), 0.3)) == 0, "removed: not polled"
    finally:
        gw.close()


def test_a_changed_duplicate_numbers_policy_applies_without_a_restart(tmp_path):
    """The pipeline's repeated-number policy follows the profile it is given: a profile
    changed from the console (a new object) is judged by its new [tracker] rules."""
    from gateway.config import TrackerRules

    settings = GatewaySettings(mappings=ROOT / "mappings", partners=tmp_path / "partners",
                               store={"url": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
                               archive={"path": tmp_path / "archive"})
    first = Partner(id="acme", name="Acme")
    gw = Gateway.open(settings, partners=PartnerDirectory([first]))
    try:
        assert gw.pipeline.number_policy(first) == ("warn", 90)
        changed = Partner(id="acme", name="Acme",
                          tracker=TrackerRules(duplicate_numbers="reject",
                                               duplicate_window_days=30))
        gw.partners_changed(PartnerDirectory([changed]))
        assert gw.pipeline.number_policy(changed) == ("reject", 30)
        assert gw.pipeline.number_policy(changed) is gw.pipeline.number_policy(changed)
    finally:
        gw.close()
