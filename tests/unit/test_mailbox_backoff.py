"""The mailbox channel's reconnect back-off starts afresh after a session that worked: a
server dropping the connection now and then does not make every later reconnect wait the
maximum."""

from __future__ import annotations

import asyncio

import gateway.channels.email.channel as ch
from gateway.channels.email.settings import MailboxSettings
from gateway.config import PartnerDirectory


class _Session:
    can_idle = False

    async def close(self) -> None:
        pass

    async def noop(self) -> None:
        pass


def test_each_drop_after_a_working_session_waits_the_initial_delay(monkeypatch):
    async def open_session(settings):
        return _Session()

    monkeypatch.setattr(ch.ImapSession, "open", staticmethod(open_session))
    delays: list[float] = []

    def warning(event, **kw):
        if event == "mailbox_failed":
            delays.append(kw["retry_in"])

    monkeypatch.setattr(ch.log, "warning", warning)

    async def main() -> None:
        channel = ch.MailboxChannel(
            MailboxSettings(host="h", user="u", password="p", poll_interval=0.01),
            partners=PartnerDirectory([]), receiver=None, verdicts=None, backoff_max=60.0)
        rounds = [0]

        async def poll_once(session):
            rounds[0] += 1
            if rounds[0] % 3 == 0:  # two good polls, then the server drops the session
                raise ch.MailError("connection reset by server")
            return 0

        channel.poll_once = poll_once
        real_wait_for = asyncio.wait_for

        async def quick_wait_for(aw, timeout):  # the back-off sleeps, made instant
            if timeout and timeout >= 0.5:
                aw.close()
                raise TimeoutError
            return await real_wait_for(aw, timeout)

        monkeypatch.setattr(ch.asyncio, "wait_for", quick_wait_for)
        stop = asyncio.Event()
        task = asyncio.create_task(channel.run(stop))
        while len(delays) < 6:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(main())
    assert delays[:6] == [delays[0]] * 6 and delays[0] <= 1.0, delays
