"""Asynchronous MDNs (RFC 4130 §7.3): delivered to the partner's ``Receipt-Delivery-Option``
URL after the HTTP request that carried the message was answered with 200.

The endpoint archives the MDN it built (its headers, a blank line, its body: see
``records.mdn_http_parts``; the content type is also in the row) and marks
the AS2 message ``mdn_state = pending``. ``AsyncMdnSender.deliver_due`` POSTs each pending MDN
whose time has come; a 2xx answer is a delivery, anything else (another status, a refused
connection, a timeout) is retried after a back-off: ``mdn_retry_initial`` seconds doubled per
attempt up to ``mdn_retry_max``, with up to 10 % jitter so that many MDNs to one partner
do not return in step. After ``mdn_max_attempts`` attempts the MDN is ``failed``. Every
attempt is recorded (``As2Records.mdn_attempt``).

Only ``http``/``https`` URLs are delivered to. ``mailto:`` (which RFC 4130 §7.3 inherits
from the e-mail transport, RFC 3335) is not supported and any other scheme is refused: such
an MDN is marked failed at once, with the reason, since retrying cannot help.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import structlog

from gateway.channels.as2.records import As2MessageRow, As2Records, mdn_http_parts
from gateway.channels.as2.settings import As2Settings
from gateway.core.errors import EdigwError
from gateway.core.urls import mask_url
from gateway.store.archive import Archive
from gateway.store.db import Store, utcnow

log = structlog.get_logger("edigw.as2.mdn")

#: Up to this share of a delay is added at random (jitter).
JITTER = 0.1
#: MDNs looked at per round.
BATCH = 100
#: Archived MDN headers that httpx sets itself (or that mean nothing over HTTP).
_NOT_SENT = {"content-length", "transfer-encoding", "connection", "host"}


class UnsupportedMdnUrl(EdigwError):
    """The Receipt-Delivery-Option names no URL we deliver to (never retried)."""


def check_mdn_url(url: str | None) -> str:
    """The URL when an MDN can be POSTed to it; raises ``UnsupportedMdnUrl`` saying why not."""
    if not url or not url.strip():
        raise UnsupportedMdnUrl("no Receipt-Delivery-Option URL")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "mailto":
        raise UnsupportedMdnUrl("asynchronous MDN by e-mail (mailto:) is not supported; "
                                "ask the partner for an http(s) Receipt-Delivery-Option")
    if scheme not in ("http", "https"):
        raise UnsupportedMdnUrl(f"unsupported Receipt-Delivery-Option scheme "
                                f"{scheme or '(none)'!r}: only http and https are delivered to")
    try:
        host = urlsplit(url).hostname
    except ValueError as exc:
        raise UnsupportedMdnUrl(f"malformed Receipt-Delivery-Option URL: {exc}") from exc
    if not host:
        raise UnsupportedMdnUrl("Receipt-Delivery-Option URL has no host")
    return url


def retry_delay(settings: As2Settings, attempt: int, *,
                rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): the initial delay
    doubled per attempt, capped at ``mdn_retry_max``, plus up to ``JITTER`` of it."""
    base = min(settings.mdn_retry_initial * (2 ** min(attempt - 1, 60)), settings.mdn_retry_max)
    return float(base * (1 + JITTER * rand()))


class AsyncMdnSender:
    """Delivers pending asynchronous MDNs, with retries; one instance per gateway."""

    def __init__(self, settings: As2Settings, store: Store, archive: Archive, *,
                 transport: httpx.BaseTransport | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.settings = settings
        self.records = As2Records(store)
        self.archive = archive
        self.transport = transport  # tests may give httpx.MockTransport
        self.rand = rand
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken: asyncio.Event | None = None

    def wake(self) -> None:
        """An MDN was queued: deliver at once rather than at the next round (any thread)."""
        if self._loop is not None and self._woken is not None:
            self._loop.call_soon_threadsafe(self._woken.set)

    def deliver_due(self, now: dt.datetime | None = None) -> int:
        """POST every MDN due at ``now``; returns how many were delivered."""
        now = now or utcnow()
        rows = self.records.due_mdns(now, BATCH)
        if not rows:
            return 0
        delivered = 0
        with httpx.Client(timeout=self.settings.mdn_timeout, transport=self.transport,
                          follow_redirects=False) as client:
            for row in rows:
                delivered += self._deliver(client, row, now)
        return delivered

    def _deliver(self, client: httpx.Client, row: As2MessageRow, now: dt.datetime) -> bool:
        attempt = (row.mdn_attempts or 0) + 1
        context = dict(partner=row.partner_id, message_id=row.message_id, attempt=attempt)
        try:
            url = check_mdn_url(row.mdn_url)
        except UnsupportedMdnUrl as exc:
            log.warning("as2_mdn_refused", url=_safe(row.mdn_url), reason=str(exc), **context)
            self.records.mdn_attempt(row.id, delivered=False, error=str(exc), next_at=None)
            return False
        context["url"] = _safe(url)
        try:
            if not row.mdn_archive_key:
                raise OSError("the MDN was not archived")
            stored, body = mdn_http_parts(self.archive.get(row.mdn_archive_key))
            reply = client.post(url, content=body, headers=self._headers(row, stored))
            if not 200 <= reply.status_code < 300:
                raise _Refused(f"HTTP {reply.status_code} {reply.reason_phrase}".strip())
        except (httpx.HTTPError, OSError, _Refused, ValueError) as exc:
            error = _describe(exc)
            if attempt >= self.settings.mdn_max_attempts:
                log.error("as2_mdn_failed", error=error, attempts=attempt, **context)
                self.records.mdn_attempt(row.id, delivered=False,
                                         error=f"gave up after {attempt} attempts: {error}",
                                         next_at=None)
            else:
                delay = retry_delay(self.settings, attempt, rand=self.rand)
                next_at = now + dt.timedelta(seconds=delay)
                log.warning("as2_mdn_retry", error=error, retry_in=round(delay, 1), **context)
                self.records.mdn_attempt(row.id, delivered=False, error=error, next_at=next_at)
            return False
        log.info("as2_mdn_delivered", status=reply.status_code, **context)
        self.records.mdn_attempt(row.id, delivered=True, error=None, next_at=None)
        return True

    def _headers(self, row: As2MessageRow, stored: dict[str, str]) -> dict[str, str]:
        """The MDN's own headers as archived, completed: the MDN goes back the other way,
        from the AS2 id the message was sent to."""
        headers = {k: v for k, v in stored.items() if k.lower() not in _NOT_SENT}
        lower = {k.lower() for k in headers}
        defaults = {
            "AS2-Version": "1.2",
            "AS2-From": _quote_as2(row.as2_to),
            "AS2-To": _quote_as2(row.as2_from),
            "Message-ID": f"<{uuid.uuid4().hex}@edigw>",
            "Date": email.utils.formatdate(usegmt=True),
            "MIME-Version": "1.0",
            "User-Agent": "edigw",
        }
        headers.update({k: v for k, v in defaults.items() if k.lower() not in lower})
        if row.mdn_content_type:
            for k in [k for k in headers if k.lower() == "content-type"]:
                del headers[k]
            headers["Content-Type"] = row.mdn_content_type
        elif "content-type" not in lower:
            headers["Content-Type"] = "multipart/report; report-type=disposition-notification"
        return headers

    async def run(self, stop: asyncio.Event, every: float = 5.0) -> None:
        """Deliver due MDNs every ``every`` seconds until ``stop``; a store outage is logged
        and the next round tries again."""
        self._loop = asyncio.get_running_loop()
        self._woken = asyncio.Event()
        while not stop.is_set():
            self._woken.clear()
            try:
                await asyncio.to_thread(self.deliver_due)
            except Exception:
                log.exception("as2_mdn_round_failed")
            waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._woken.wait())}
            _done, pending = await asyncio.wait(waits, timeout=every,
                                                return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()


class _Refused(EdigwError):
    """The partner's server answered, but not with 2xx."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    return text[:500]


def _safe(url: str | None) -> str | None:
    """The URL without its password, for logs."""
    if url is None:
        return None
    try:
        return mask_url(url)
    except ValueError:
        return "(malformed URL)"


def _quote_as2(as2_id: str) -> str:
    # RFC 4130 §6.2: an AS2 name with spaces or specials is a quoted string.
    if any(c in as2_id for c in ' "()<>@,;:\\[]?='):
        return '"' + as2_id.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return as2_id
