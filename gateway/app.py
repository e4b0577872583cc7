"""Composition root: the one place that wires settings, store, readers, channels and bus."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gateway.bus import BusSettings, OutboxPublisher, check_broker
from gateway.channels.email.channel import MailboxChannel
from gateway.channels.email.mailer import Mailer
from gateway.channels.email.replies import MailReplies
from gateway.channels.folder.watcher import FolderChannel, FolderSpec
from gateway.channels.outbound import FolderSender, OutboundDispatcher, Sender
from gateway.channels.sftp import SftpChannel, SftpSender
from gateway.config import (
    ConfigError,
    GatewaySettings,
    Partner,
    PartnerDirectory,
    load_partners,
    mask_url,
)
from gateway.core import clock
from gateway.core.pipeline import Pipeline
from gateway.core.ports import Receipt
from gateway.core.supervise import Backoff, periodic, supervised
from gateway.formats.csv import CsvReader
from gateway.formats.edifact.parallel import Workers
from gateway.formats.edifact.reader import EdifactReader
from gateway.formats.mapping import MappingSet
from gateway.formats.pdf import PdfReader
from gateway.formats.sms.reader import SmsReader
from gateway.formats.xml.reader import XmlReader
from gateway.store.archive import Archive
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.store.records import aware

log = structlog.get_logger("edigw.app")


def bus_settings(settings: GatewaySettings) -> BusSettings:
    b = settings.broker
    return BusSettings(
        url=b.url, exchange=b.exchange, dead_letter_exchange=b.dead_letter_exchange,
        dead_letter_queue=b.dead_letter_queue,
        queues=tuple((q.name, tuple(q.bindings)) for q in b.queues),
        confirm_window=b.confirm_window, batch=b.batch,
        retry_initial=b.retry_initial, retry_max=b.retry_max, heartbeat=b.heartbeat,
    )


def _readers(mappings: MappingSet) -> list:
    """The format readers, in the order their ``sniff`` is tried: PDF first (``%PDF-``; its
    bytes may contain anything), then EDIFACT, XML, SMS envelopes (an exact first line), and
    CSV last (it only claims text that looks delimited and nothing else took)."""
    xml = XmlReader(mappings)
    return [PdfReader(xml_reader=xml), EdifactReader(mappings), xml, SmsReader(),
            CsvReader(mappings)]


@dataclass
class Gateway:
    """Everything one running gateway holds."""

    settings: GatewaySettings
    partners: PartnerDirectory
    store: Store
    archive: Archive
    mappings: MappingSet
    pipeline: Pipeline[Partner]
    publisher: OutboxPublisher | None = None
    outbound: OutboundDispatcher | None = None
    channels: list[FolderChannel] = field(default_factory=list)
    sftp_channels: list[SftpChannel] = field(default_factory=list)
    mail_channels: list[MailboxChannel] = field(default_factory=list)
    mailer: Mailer | None = None
    mail_replies: MailReplies | None = None
    http: Any = None  # gateway.http.server.HttpServer, once serving
    mdn_sender: Any = None  # gateway.channels.as2.mdn_sender.AsyncMdnSender, with [as2]
    endpoints: dict[str, Any] = field(default_factory=dict)  # the HTTP server's POST routes
    _policies: dict[str, tuple[Any, tuple[str, int]]] = field(default_factory=dict)
    events: Any = None  # gateway.bus.events.EventPublisher (edi.events)
    acks: Any = None  # gateway.bus.acks.AckConsumer (edi.acks)
    #: When processing last got on (a batch done, documents queued): /readyz's stall check.
    last_progress: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, settings: GatewaySettings, *, partners: PartnerDirectory | None = None) -> Gateway:
        """Open the store (migrating it), the archive and the mappings; no network yet."""
        partners = partners if partners is not None else load_partners(settings.partners)
        store = Store.from_url(settings.store.url)
        archive = Archive(settings.archive.path, fsync=settings.archive.fsync)
        mappings = MappingSet.load(Path(settings.mappings))
        gw = cls(settings=settings, partners=partners, store=store, archive=archive,
                 mappings=mappings, pipeline=None)  # type: ignore[arg-type]
        senders: dict[str, Sender] = {"folder": FolderSender(settings.outbound.path),
                                      "sftp": SftpSender()}
        gw.outbound = OutboundDispatcher(store, archive, senders=senders, partner=partners.get,
                                         max_attempts=settings.outbound.max_attempts)
        gw.pipeline = Pipeline(store=store, archive=archive, partners=partners,
                               readers=_readers(mappings), on_queued=gw._wake_publisher,
                               on_outbound=gw.deliver_outbound,
                               max_size=max([i.max_size for i in settings.inbox]
                                            + [p.sftp.max_size for p in partners
                                               if p.sftp is not None]
                                            + [m.max_message_bytes for m in settings.mailboxes]
                                            + ([settings.as2.max_size] if settings.as2 else []),
                                            default=200 << 20),
                               stream_above=settings.processing.stream_above,
                               max_message_bytes=settings.broker.max_message_bytes,
                               time_limit=settings.processing.time_limit,
                               max_attempts=settings.processing.max_attempts,
                               offload=Workers)
        gw.pipeline.number_policy = gw.number_policy
        return gw

    def number_policy(self, partner: Partner) -> tuple[str, int]:
        """The partner's ``duplicate_numbers`` policy and window, worked out once per profile
        object: a profile changed from the console is a new object, so never a stale one."""
        hit = self._policies.get(partner.id)
        if hit is None or hit[0] is not partner:
            r = self.settings.tracker.rules_for(partner)
            hit = (partner, (r.duplicate_numbers or "warn", r.duplicate_window_days or 90))
            self._policies[partner.id] = hit
        return hit[1]

    def deliver_outbound(self) -> int:
        """Send what is waiting for partners (after a processing batch, and periodically)."""
        if self.outbound is None:
            return 0
        try:
            return self.outbound.deliver_pending()
        except Exception:  # a store outage: the rows stay PENDING for the next round
            log.exception("outbound_delivery_failed")
            return 0

    def _wake_publisher(self) -> None:
        self.last_progress = time.monotonic()  # documents were committed: processing moves
        if self.publisher is not None:
            self.publisher.wake()

    def start_publisher(self) -> OutboxPublisher:
        if self.publisher is None:
            self.publisher = OutboxPublisher(self.store, bus_settings(self.settings), declare=True)
            self.publisher.start()
        return self.publisher

    def broker_problem(self, timeout: float = 3.0) -> str | None:
        """None when the broker answers, else why not (password masked)."""
        return check_broker(self.settings.broker.url, timeout)

    def close(self, timeout: float = 10.0) -> None:
        for worker in (self.acks, self.events):
            if worker is not None:
                worker.stop()
        self.acks = self.events = None
        if self.publisher is not None:
            self.publisher.stop(timeout)
            self.publisher = None
        if self.outbound is not None:
            sftp = self.outbound.senders.get("sftp")
            if isinstance(sftp, SftpSender):
                sftp.close()  # its sessions to partners' servers
        if self.pipeline is not None:
            self.pipeline.close_workers()
        self.store.close()

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run folder channels, the processing worker and the publisher until stopped."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        problem = await asyncio.to_thread(self.broker_problem)
        url = mask_url(self.settings.broker.url)
        if problem:
            log.warning("broker_unreachable", broker=url, reason=problem,
                        hint="documents wait in the outbox and go out when the broker is back")
        else:
            log.info("broker_reachable", broker=url)
        self.start_publisher()
        self.pipeline.start_workers(Path(self.settings.mappings))

        queue: asyncio.Queue[str] = asyncio.Queue()

        def on_received(receipts: list[Receipt]) -> None:
            for r in receipts:
                loop.call_soon_threadsafe(queue.put_nowait, r.transmission_id)

        for inbox in self.settings.inbox:
            spec = FolderSpec(path=inbox.path, processed=inbox.processed_dir,
                              failed=inbox.failed_dir, partner=inbox.partner,
                              poll_interval=inbox.poll_interval, ignore=tuple(inbox.ignore),
                              max_size=inbox.max_size)
            self.channels.append(FolderChannel(spec, receiver=self.pipeline,
                                               on_received=on_received))

        records = ChannelRecords(self.store)
        self.sftp_channels = [
            SftpChannel(p, receiver=self.pipeline, records=records, on_received=on_received,
                        outcomes=self.store, settle=self.settings.sftp.settle,
                        stream_above=self.settings.processing.stream_above)
            for p in self.partners if p.enabled and p.sftp is not None and p.sftp.inbound]

        def task(name: str, run: Callable[[asyncio.Event], Any]) -> asyncio.Task:
            """A worker loop under supervision: an exception is logged and it starts again."""
            return asyncio.create_task(supervised(name, lambda: run(stop), stop=stop),
                                       name=name)

        # The processing worker goes first: it resumes what an earlier run left RECEIVED.
        tasks = [asyncio.create_task(self._process_worker(queue, stop), name="process")]
        tasks += [task(f"folder:{c.spec.path}", c.run) for c in self.channels]
        tasks += [task(c.name, c.run) for c in self.sftp_channels]
        if self.settings.smtp is not None:
            self.mailer = Mailer(self.settings.smtp, records=records)
            self.mail_replies = MailReplies(self.mailer, self.store)
            tasks.append(task("mail-replies", self.mail_replies.run))
        self.mail_channels = [
            MailboxChannel(m, partners=self.partners, receiver=self.pipeline,
                           verdicts=self.store, records=records, on_received=on_received,
                           replies=self.mail_replies) for m in self.settings.mailboxes]
        tasks += [task(c.name, c.run) for c in self.mail_channels]
        tasks += self._http_tasks(on_received, records, stop)
        tasks += self._tracker_tasks(stop)
        tasks.append(asyncio.create_task(periodic(
            "outbound", self.deliver_outbound, every=30.0, stop=stop), name="outbound"))
        if self.http is not None:
            await self.http.started(timeout=10.0)
        log.info("gateway_started", inboxes=[str(c.spec.path) for c in self.channels],
                 http=self.http.url if self.http is not None else None,
                 sftp=[c.name for c in self.sftp_channels],
                 mailboxes=[c.name for c in self.mail_channels],
                 store=mask_url(self.settings.store.url), partners=len(self.partners))
        await stop.wait()
        log.info("gateway_stopping")
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.close)

    # -- HTTP: health, AS2, SMS webhooks ----------------------------------------------------

    def ready_checks(self) -> list[tuple[str, Callable[[], str | None]]]:
        """What ``/readyz`` asks: the store answers; the broker is connected and its
        heartbeats arrive (publisher and events connections); processing is not stalled."""
        def store() -> str | None:
            return self.store.ping()

        def broker() -> str | None:
            if self.publisher is None:
                return "publisher not started"
            h = self.publisher.health
            if not h.connected:
                return f"not connected: {h.last_error or 'connecting'}"
            return self._silent_broker()

        return [("store", store), ("broker", broker), ("processing", self.processing_problem)]

    def _silent_broker(self) -> str | None:
        """Why a broker connection counts as dead though open: nothing heard on it (not even
        a heartbeat) for more than two ``[broker] heartbeat`` intervals."""
        limit = 2 * self.settings.broker.heartbeat
        for name, worker in (("publisher", self.publisher), ("events", self.events)):
            silent = worker.silent_for() if worker is not None else None
            if silent is not None and silent > limit:
                return (f"{name} connection silent for {silent:.0f} s (no heartbeat in "
                        f"{limit} s): network partition or broker hung")
        return None

    def processing_problem(self) -> str | None:
        """Processing is stalled: a transmission has waited RECEIVED for more than
        ``[processing] stalled_after`` s while no batch was processed for as long."""
        limit = self.settings.processing.stalled_after
        idle = time.monotonic() - self.last_progress
        if idle <= limit:
            return None
        waiting = self.store.transmissions_to_process(limit=1)
        if not waiting:
            return None
        age = (clock.now() - aware(waiting[0].received_at)).total_seconds()
        if age <= limit:
            return None
        return (f"stalled: transmission {waiting[0].id} RECEIVED {age:.0f} s ago and nothing "
                f"processed for {idle:.0f} s")

    def http_endpoints(self, on_received: Callable[[list[Receipt]], None] | None = None
                       ) -> dict[str, Any]:
        """The POST routes: ``/as2`` when ``[as2]`` is configured, ``/sms/twilio`` and
        ``/sms/vonage`` when ``[sms]`` names those providers."""
        from gateway.store.security import SecurityLog

        security = SecurityLog(self.store)
        endpoints: dict[str, Any] = {}
        s = self.settings
        if s.as2 is not None:
            from gateway.channels.as2.endpoint import As2Endpoint

            endpoints["/as2"] = As2Endpoint(
                s.as2, self.partners, receiver=self.pipeline, store=self.store,
                archive=self.archive, security=security, on_received=on_received,
                on_mdn_queued=self.mdn_sender.wake if self.mdn_sender is not None else None)
        if s.sms is not None:
            from gateway.channels.sms.webhook import TwilioWebhook, VonageWebhook

            common = dict(receiver=self.pipeline, store=self.store, security=security,
                          on_received=on_received)
            if s.sms.twilio is not None:
                endpoints["/sms/twilio"] = TwilioWebhook(s.sms, self.partners, **common)
            if s.sms.vonage is not None:
                endpoints["/sms/vonage"] = VonageWebhook(s.sms, self.partners, **common)
        return endpoints

    def partners_changed(self, directory: PartnerDirectory) -> None:
        """A partner profile changed (the console's administration): everything running
        looks partners up in the new directory from now on — the pipeline, outbound
        deliveries, mailboxes, the AS2 and SMS endpoints — and each SFTP poller takes its
        partner's new credentials, or stops polling a partner now disabled."""
        self.partners = directory
        if self.pipeline is not None:
            self.pipeline.partners = directory
        if self.outbound is not None:
            self.outbound.partner = directory.get
        for box in self.mail_channels:
            box.partners = directory
        for endpoint in self.endpoints.values():
            if hasattr(endpoint, "partners"):
                endpoint.partners = directory
            if hasattr(endpoint, "_partner_certs"):
                endpoint._partner_certs = {}  # certificates read again (an upload, a rotation)
        for channel in self.sftp_channels:
            channel.update(directory.get(channel.partner.id))
        log.info("partners_reloaded", partners=len(directory))

    def console_routes(self) -> tuple[list[Any], dict[str, Any]]:
        """The operator console: its API at /api, its pages, /metrics; and the app state they
        read (the gateway, the authenticator, the partner administration)."""
        from gateway.store.audit import AuditLog
        from gateway.web.api import create_console
        from gateway.web.metrics import metrics_route
        from gateway.web.pages import page_routes
        from gateway.web.partners_admin import PartnerAdmin

        console = create_console(self, secure_cookies=self.settings.http.secure_cookies)
        admin = PartnerAdmin(self.settings, audit=AuditLog(self.store),
                             on_change=self.partners_changed,
                             secrets_dir=self.settings.secrets_dir,
                             certs_dir=self.settings.certs_dir)
        console.api.state.partner_admin = admin
        routes = [*console.routes, *page_routes(console.auth),
                  metrics_route(self.store, console.auth.principal)]
        return routes, {"gateway": self, "auth": console.auth, "partner_admin": admin,
                        "body_limits": console.body_limits}

    def _http_tasks(self, on_received: Callable[[list[Receipt]], None], records: ChannelRecords,
                    stop: asyncio.Event) -> list[asyncio.Task]:
        from gateway.http.bounds import BodyPace
        from gateway.http.server import HttpServer, build_app

        h = self.settings.http
        tasks: list[asyncio.Task] = []
        if self.settings.as2 is not None:
            from gateway.channels.as2.certificates import check_certificates
            from gateway.channels.as2.mdn_sender import AsyncMdnSender

            self.mdn_sender = AsyncMdnSender(self.settings.as2, self.store, self.archive)
            tasks.append(asyncio.create_task(supervised(
                "as2-mdn", lambda: self.mdn_sender.run(stop), stop=stop), name="as2-mdn"))
            tasks.append(asyncio.create_task(periodic(
                "certificates",
                lambda: check_certificates(self.settings.as2, self.partners, self.store),
                every=86400.0, stop=stop), name="certificates"))
        if not h.enabled:
            return tasks
        routes, state = self.console_routes() if h.console else ([], {})
        self.endpoints = self.http_endpoints(on_received)
        app = build_app(endpoints=self.endpoints, ready=self.ready_checks(),
                        max_body=h.max_body, max_json=h.max_json, public_url=h.public_url,
                        routes=routes, state=state)
        try:
            self.http = HttpServer(app, h.host, h.port, header_timeout=h.header_timeout,
                                   keep_alive=h.keep_alive, max_connections=h.max_connections,
                                   body=BodyPace(timeout=h.body_timeout,
                                                 min_rate=h.min_body_rate))
        except OSError as exc:
            if self.settings.as2 is not None or self.settings.sms is not None:
                raise ConfigError(f"cannot listen on {h.host}:{h.port}: {exc.strerror}",
                                  file=self.settings.source, key="http.port") from exc
            # Health endpoints only: the gateway still does its work without them.
            log.warning("http_not_started", host=h.host, port=h.port, reason=exc.strerror,
                        hint="set [http] port to a free port, or enabled = false")
            return tasks
        tasks.append(asyncio.create_task(self.http.serve(stop), name="http"))
        return tasks

    # -- the tracker: ERP acknowledgements in, alerts out ---------------------------------

    def _tracker_tasks(self, stop: asyncio.Event) -> list[asyncio.Task]:
        t = self.settings.tracker
        if not t.enabled:
            return []
        from gateway.bus.acks import AckConsumer
        from gateway.bus.events import EventPublisher
        from gateway.tracker.retention import purge

        b = self.settings.broker
        self.events = EventPublisher(self.store, b.url, t.events_exchange,
                                     retry_initial=b.retry_initial, retry_max=b.retry_max,
                                     heartbeat=b.heartbeat)
        self.events.start()
        self.acks = AckConsumer(self.store, b.url, t, heartbeat=b.heartbeat)
        self.acks.start()
        return [asyncio.create_task(self._track(stop), name="tracker"),
                asyncio.create_task(periodic("retention", lambda: purge(
                    self.store, self.archive, self.settings, self.partners),
                    every=86400.0, stop=stop), name="retention")]

    async def _track(self, stop: asyncio.Event) -> None:
        """Run the tracker's rules every ``[tracker] every`` seconds; announce what opened
        (edi.events, and a mail to the operators)."""
        from gateway.tracker.alerts import AlertBook
        from gateway.tracker.engine import Tracker
        from gateway.tracker.notify import mail_new_alerts

        t = self.settings.tracker
        as2 = self.settings.as2
        tracker = Tracker(t, self.partners, self.store, certificate_warning_days=(
            as2.certificate_warning_days if as2 is not None else 30),
            stalled_after=self.settings.processing.stalled_after)
        book = AlertBook(self.store)
        smtp = self.settings.smtp
        mail = t.mail_alerts and smtp is not None and bool(smtp.operators)

        async def announce() -> None:
            if self.events is not None:
                self.events.wake()
            if mail and self.mailer is not None:
                await mail_new_alerts(book, self.mailer)

        await periodic("tracker", tracker.check, every=t.every, stop=stop, after=announce)

    #: Seconds between looks for transmissions left RECEIVED outside the queue (when idle),
    #: and how old they must be to be taken.
    SWEEP_EVERY = 60.0

    async def _process_worker(self, queue: asyncio.Queue[str], stop: asyncio.Event) -> None:
        """Process received transmissions until stopped, supervised: a store outage pauses
        processing, which resumes by itself within the back-off (5 s at most) of the store's
        return, starting with the batch the outage interrupted."""
        held: list[str] = []  # the batch being processed: kept across a failure
        resumed = [False]
        await supervised("process", lambda: self._process_batches(queue, stop, held, resumed),
                         stop=stop, backoff=Backoff(0.5, 5.0))

    async def _process_batches(self, queue: asyncio.Queue[str], stop: asyncio.Event,
                               held: list[str], resumed: list[bool]) -> None:
        """Resume what an earlier run left RECEIVED (once), then process what arrives, up to
        256 at a time in one commit. Raises on a store outage; the supervisor starts this
        again after the back-off and the interrupted batch (``held``) goes first. It is
        processed again directly, not through ``resume``: an outage is not a crash and
        counts no start against its transmissions."""
        if not resumed[0]:
            n = await asyncio.to_thread(self.pipeline.resume)
            resumed[0] = True
            self.last_progress = time.monotonic()
            if n:
                log.info("resumed_after_restart", transmissions=n)
        swept = time.monotonic()
        while not stop.is_set():
            if not held:
                try:
                    held.append(await asyncio.wait_for(queue.get(), timeout=0.5))
                except TimeoutError:
                    if time.monotonic() - swept > self.SWEEP_EVERY:
                        # Idle: what was left RECEIVED outside the queue (a reprocess or an
                        # ingest cut short) is taken here rather than at the next start.
                        swept = time.monotonic()
                        if await asyncio.to_thread(self.pipeline.sweep, self.SWEEP_EVERY):
                            self.last_progress = time.monotonic()
                    continue
                while len(held) < 256 and not queue.empty():
                    held.append(queue.get_nowait())
            outcomes = await asyncio.to_thread(self.pipeline.process_many, list(held))
            held.clear()
            self.last_progress = time.monotonic()
            if self.mail_replies is not None:
                self.mail_replies.processed(outcomes)  # replies go out at once
