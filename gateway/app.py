"""Composition root: the one place that wires settings, store, readers, channels and bus."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from gateway.bus import BusSettings, OutboxPublisher, check_broker
from gateway.channels.email.mailer import Mailer
from gateway.channels.intake import OutboundIntake
from gateway.channels.kind import ChannelContext, ChannelRun
from gateway.channels.outbound import FolderSender, OutboundDispatcher, Sender
from gateway.channels.pricelists import PriceListDistributor
from gateway.channels.registry import CHANNELS
from gateway.config import (
    GatewaySettings,
    Partner,
    PartnerDirectory,
    PartnerFolderWatch,
    load_partners,
)
from gateway.core import clock
from gateway.core.errors import ConfigError
from gateway.core.leases import LeaseKeeper
from gateway.core.pipeline import Outcome, Pipeline
from gateway.core.ports import Receipt
from gateway.core.supervise import Backoff, periodic, periodic_loop, supervised
from gateway.core.urls import mask_url
from gateway.formats.edifact.parallel import Workers
from gateway.formats.mapping import MappingSet
from gateway.formats.registry import default_readers
from gateway.formats.render import OutboundMappings
from gateway.store.archive import Archive
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.store.records import aware

if TYPE_CHECKING:
    from gateway.bus.acks import AckConsumer
    from gateway.bus.events import EventPublisher
    from gateway.bus.outbound import OutboundConsumer
    from gateway.http.server import Endpoint, HttpServer

log = structlog.get_logger("edigw.app")


def bus_settings(settings: GatewaySettings) -> BusSettings:
    b = settings.broker
    return BusSettings(
        url=b.url, urls=tuple(b.urls), queue_type=b.queue_type, exchange=b.exchange, dead_letter_exchange=b.dead_letter_exchange,
        dead_letter_queue=b.dead_letter_queue,
        queues=tuple((q.name, tuple(q.bindings)) for q in b.queues),
        confirm_window=b.confirm_window, batch=b.batch,
        retry_initial=b.retry_initial, retry_max=b.retry_max, heartbeat=b.heartbeat,
        confirm_timeout=b.confirm_timeout, outbound_exchange=b.outbound_exchange,
        outbound_queue=b.outbound_queue, outbound_dead_exchange=b.outbound_dead_exchange,
        outbound_dead_queue=b.outbound_dead_queue, test_queue=b.test_queue,
    )


class Gateway:
    """Everything one running gateway holds: its settings, the live partner directory, the
    store, archive and mappings, the pipeline, and once serving the bus workers, the HTTP
    server and what each channel started (``runs``, by channel name)."""

    #: Made by ``open`` (its callbacks are this gateway's), or given.
    pipeline: Pipeline[Partner]

    def __init__(self, settings: GatewaySettings, partners: PartnerDirectory, store: Store,
                 archive: Archive, mappings: MappingSet, pipeline: Pipeline[Partner] | None = None
                 ) -> None:
        self.settings = settings
        self.partners = partners
        self.store = store
        self.archive = archive
        self.mappings = mappings
        if pipeline is not None:
            self.pipeline = pipeline
        self.outbound: OutboundDispatcher | None = None
        #: Documents for partners (``edi.outbound``, ``edigw send``, ``POST /api/outbound``).
        self.intake: OutboundIntake | None = None
        #: Price lists published once for every partner subscribed to them.
        self.distributor: PriceListDistributor | None = None
        #: Set when a document was rendered: the delivery loop goes at once.
        self._outbound_wake = threading.Event()
        self.publisher: OutboxPublisher | None = None
        #: The gateway's outgoing mail (``[smtp]``): partners' replies and operators' alerts.
        self.mailer: Mailer | None = None
        self.http: HttpServer | None = None
        self.runs: dict[str, ChannelRun] = {}
        #: Where channels outside the channel runs (the portal's uploads) hand their receipts
        #: while ``serve`` runs: the processing worker's queue; None otherwise.
        self.on_received: Callable[[list[Receipt]], None] | None = None
        #: Keeps ``partners`` in step with the profile files, while serving.
        self.partner_watch: PartnerFolderWatch | None = None
        self.events: EventPublisher | None = None  # edi.events
        self.acks: AckConsumer | None = None  # edi.acks
        self.outbound_bus: OutboundConsumer | None = None  # edi.outbound
        #: When processing last got on (a batch done, documents queued): /readyz's stall check.
        self.last_progress = time.monotonic()
        self._policies: dict[str, tuple[Partner, tuple[str, int]]] = {}
        #: This instance's heartbeat and leases, while serving (several may share a store).
        self.leases: LeaseKeeper | None = None

    @classmethod
    def open(cls, settings: GatewaySettings, *, partners: PartnerDirectory | None = None) -> Gateway:
        """Open the store (migrating it), the archive and the mappings; no network yet."""
        partners = partners if partners is not None else load_partners(settings.partners)
        store = Store.from_url(settings.store.url)
        archive = Archive(settings.archive.path, fsync=settings.archive.fsync)
        mappings = MappingSet.load(Path(settings.mappings))
        gw = cls(settings=settings, partners=partners, store=store, archive=archive,
                 mappings=mappings)
        senders: dict[str, Sender] = {"folder": FolderSender(settings.outbound.path)}
        for kind in CHANNELS:
            made = kind.sender(settings) if kind.sender is not None else None
            if made is not None:
                senders[kind.name] = made
        gw.outbound = OutboundDispatcher(store, archive, senders=senders, partner=partners.get,
                                         max_attempts=settings.outbound.max_attempts,
                                         retry_initial=settings.outbound.retry_initial,
                                         retry_max=settings.outbound.retry_max)
        gw.intake = OutboundIntake(store=store, archive=archive, partners=partners.get,
                                   mappings=OutboundMappings.load(Path(settings.mappings)),
                                   sender_id=settings.outbound.sender_id,
                                   sender_qualifier=settings.outbound.sender_qualifier,
                                   stream_above=settings.outbound.stream_above,
                                   on_rendered=gw._outbound_wake.set)
        gw.distributor = PriceListDistributor(store, archive, lambda: list(gw.partners),
                                              gw.intake)
        gw.pipeline = Pipeline(store=store, archive=archive, partners=partners,
                               readers=default_readers(mappings), on_queued=gw._wake_publisher,
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

    def deliver_outbound(self) -> None:
        """Send what is waiting for partners (after a processing batch, and periodically);
        serving, by the one instance that holds the ``outbound`` lease."""
        if self.outbound is None:
            return
        if self.leases is not None and not self.leases.holds("outbound"):
            return
        try:
            self.outbound.deliver_pending()
        except Exception:  # a store outage: the rows stay PENDING for the next round
            log.exception("outbound_delivery_failed")

    #: Seconds between two looks at what waits for delivery (sooner when woken), and
    #: between two looks for outbound documents a crash left unrendered.
    OUTBOUND_EVERY = 2.0
    RESUME_OUTBOUND_EVERY = 30.0

    async def _outbound_loop(self, stop: asyncio.Event) -> None:
        """Deliver what waits for partners (retries when their back-off ends), render what
        a crash left RECEIVED; on the instance holding the ``outbound`` lease."""
        last_resume = 0.0
        while not stop.is_set():
            await asyncio.to_thread(self._outbound_wake.wait, self.OUTBOUND_EVERY)
            self._outbound_wake.clear()
            if stop.is_set():
                break
            await asyncio.to_thread(self.deliver_outbound)
            if (self.intake is not None and time.monotonic() - last_resume
                    > self.RESUME_OUTBOUND_EVERY and (self.leases is None
                                                      or self.leases.holds("outbound"))):
                last_resume = time.monotonic()
                try:
                    if self.distributor is not None:
                        await asyncio.to_thread(self.distributor.resume)
                    await asyncio.to_thread(self.intake.resume)
                except Exception:  # a store outage: next round
                    log.exception("outbound_resume_failed")

    def _wake_publisher(self) -> None:
        self.last_progress = time.monotonic()  # documents were committed: processing moves
        if self.publisher is not None:
            self.publisher.wake()

    def start_publisher(self) -> OutboxPublisher:
        if self.publisher is None:
            self.publisher = OutboxPublisher(self.store, bus_settings(self.settings), declare=True)
            self.publisher.start()
        return self.publisher

    def start_outbound_consumer(self) -> None:
        """Documents the ERP sends to partners (``edi.outbound``), consumed on every
        instance: the quorum queue hands each message to one consumer, and the intake knows
        a message id it received before."""
        from gateway.bus.outbound import OutboundConsumer
        from gateway.bus.topology import outbound_names
        from gateway.channels.intake_routes import route_outbound_batch

        if self.intake is None or self.outbound_bus is not None:
            return
        b = self.settings.broker
        self.outbound_bus = OutboundConsumer(
            b.urls, accept_batch=route_outbound_batch(self.intake, self.distributor),
            names=outbound_names(bus_settings(self.settings)),
            retry_initial=b.retry_initial, retry_max=b.retry_max, heartbeat=b.heartbeat)
        self.outbound_bus.start()

    def broker_problem(self, timeout: float = 3.0) -> str | None:
        """None when the broker answers, else why not (password masked)."""
        return check_broker(self.settings.broker.urls, timeout)

    def close(self, timeout: float = 10.0) -> None:
        for worker in (self.outbound_bus, self.acks, self.events):
            if worker is not None:
                worker.stop()
        self.acks = self.events = self.outbound_bus = None
        if self.publisher is not None:
            self.publisher.stop(timeout)
            self.publisher = None
        for run in self.runs.values():
            for close in run.close:
                close()
        if self.outbound is not None:
            for sender in self.outbound.senders.values():
                closer = getattr(sender, "close", None)
                if closer is not None:
                    closer()  # sessions to partners' servers, HTTP clients
        pipeline: Pipeline[Partner] | None = getattr(self, "pipeline", None)
        if pipeline is not None:
            pipeline.close_workers()
        if self.leases is not None:
            self.leases.stopped()  # the others take over at once
            self.leases = None
        self.store.close()

    # -- partners -----------------------------------------------------------------------

    #: Seconds between two looks at the partner profile folder while serving.
    PARTNERS_EVERY = 3.0
    #: The manager's rollup of order and invoice values: refreshed this often, this far back.
    VALUES_EVERY = 120.0
    VALUES_SPAN = dt.timedelta(days=366)
    #: The traffic rollup kept by the same loop: the days before this week's Monday.
    TRAFFIC_SPAN = dt.timedelta(days=35)

    def partners_changed(self, directory: PartnerDirectory) -> None:
        """A partner profile changed (the console's administration): the live directory takes
        the new profiles, and everything running finds them at its next lookup (the
        pipeline, outbound deliveries, channels, endpoints)."""
        if self.partner_watch is not None:
            self.partner_watch.take(directory)  # the files it wrote are not a change again
        else:
            self.partners.replace(directory)
        log.info("partners_reloaded", partners=len(directory))

    # -- serving --------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Run the channels, the processing worker and the publisher until stopped."""
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
        keeper = await asyncio.to_thread(self.register_instance)
        self.start_publisher()
        self.start_outbound_consumer()
        self.pipeline.start_workers(Path(self.settings.mappings))

        queue: asyncio.Queue[str] = asyncio.Queue()

        def on_received(receipts: list[Receipt]) -> None:
            for r in receipts:
                loop.call_soon_threadsafe(queue.put_nowait, r.transmission_id)

        self.on_received = on_received  # the portal's uploads go to the same worker
        self.runs = self.start_channels(on_received)

        def task(name: str, run: Callable[[asyncio.Event], Awaitable[Any]]) -> asyncio.Task[None]:
            """A worker loop under supervision: an exception is logged and it starts again."""
            return asyncio.create_task(supervised(name, lambda: run(stop), stop=stop),
                                       name=name)

        def every(name: str, job: Callable[[], object], seconds: float) -> asyncio.Task[None]:
            return asyncio.create_task(periodic(name, job, every=seconds, stop=stop), name=name)

        # The heartbeat first: the leases it takes start the work that runs once.
        tasks = [asyncio.create_task(keeper.run(stop), name="leases")]
        # The processing worker goes next: it resumes what an earlier run left RECEIVED.
        tasks.append(asyncio.create_task(self._process_worker(queue, stop), name="process"))
        for run in self.runs.values():
            tasks += [task(name, loop_ if name in run.everywhere
                           else keeper.leased(f"loop:{name}", loop_))
                      for name, loop_ in run.loops]
            tasks += [every(name, job, seconds) if name in run.everywhere
                      else task(name, keeper.leased(f"job:{name}", periodic_loop(name, job, seconds)))
                      for name, job, seconds in run.periodic]
        tasks += self._http_tasks(stop)
        tasks += self._tracker_tasks(stop)
        keeper.want("outbound")
        tasks.append(task("outbound", self._outbound_loop))
        self.partner_watch = PartnerFolderWatch(self.partners, self.settings.partners)
        tasks.append(every("partners", self.partner_watch.check, self.PARTNERS_EVERY))
        if self.http is not None:
            await self.http.started(timeout=10.0)
            tasks.append(asyncio.create_task(asyncio.to_thread(self._warm_console),
                                             name="warm-console"))
        log.info("gateway_started",
                 channels={name: [n for n, _ in run.loops] for name, run in self.runs.items()
                           if run.loops},
                 http=self.http.url if self.http is not None else None,
                 store=mask_url(self.settings.store.url), partners=len(self.partners))
        await stop.wait()
        log.info("gateway_stopping")
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.close)

    def _warm_console(self) -> None:
        """Read the console's per-day figures once at start (every day of the store: at a
        million transmissions, tens of seconds), so the first person to open the dashboard
        does not wait for it. A failure is logged; the first page then fills what it needs."""
        from gateway.store.read.daily import status_totals

        started = time.monotonic()
        try:
            status_totals(self.store, clock.now().astimezone(dt.UTC).date())
        except Exception as exc:  # an outage now: the first request reads instead
            log.warning("console_warm_failed", error=str(exc))
            return
        log.info("console_warm", seconds=round(time.monotonic() - started, 1))

    #: Seconds a lease lasts without renewal, and between two renewals (and heartbeats):
    #: an instance that dies has its leases taken over within their sum.
    LEASE_TTL = 15.0
    LEASE_EVERY = 5.0

    def register_instance(self) -> LeaseKeeper:
        """Record this ``serve`` in the store (claims and leases are in its name) and make
        its lease keeper. On SQLite the file lock already makes it the only one."""
        import os
        import secrets
        import socket
        from importlib.metadata import PackageNotFoundError, version

        try:
            release: str | None = version("edigw")
        except PackageNotFoundError:  # run from a checkout that was never installed
            release = None
        host = socket.gethostname()
        instance_id = f"{host[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        exclusive = self.store.engine.dialect.name == "sqlite"
        self.store.register_instance(instance_id, host=host, pid=os.getpid(),
                                     version=release, exclusive=exclusive)
        self.store.instance_id = instance_id
        self.leases = LeaseKeeper(self.store, instance_id, ttl=self.LEASE_TTL,
                                  every=self.LEASE_EVERY)
        log.info("instance_registered", instance=instance_id, shared_store=not exclusive)
        return self.leases

    def start_channels(self, on_received: Callable[[list[Receipt]], None]
                       ) -> dict[str, ChannelRun]:
        """What each channel of the registry starts, by channel name."""
        records = ChannelRecords(self.store)
        if self.settings.smtp is not None and self.mailer is None:
            self.mailer = Mailer(self.settings.smtp, records=records)
        ctx = ChannelContext(settings=self.settings, partners=self.partners,
                             receiver=self.pipeline, store=self.store, archive=self.archive,
                             records=records, on_received=on_received, mailer=self.mailer,
                             listening=self.settings.http.enabled,
                             instance_id=self.store.instance_id)
        return {kind.name: kind.start(ctx) for kind in CHANNELS if kind.start is not None}

    @property
    def endpoints(self) -> dict[str, Endpoint]:
        """The HTTP POST routes the channels contribute, by path."""
        return {path: ep for run in self.runs.values() for path, ep in run.endpoints.items()}

    def _processed(self, outcomes: Sequence[Outcome]) -> None:
        """Tell the channels that asked what a processing batch came to."""
        for run in self.runs.values():
            for hook in run.after_processing:
                hook(outcomes)

    # -- HTTP: health and the channels' endpoints -----------------------------------------

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

        return [("store", store), ("broker", broker), ("processing", self.processing_problem),
                ("instance", self.instance_problem)]

    def instance_problem(self) -> str | None:
        """This instance cannot record its heartbeat: its leases are given up (the work
        that runs once goes on elsewhere) and the others will count it dead."""
        keeper = self.leases
        if keeper is None or keeper.last_error is None:
            return None
        since = "never" if keeper.last_beat is None else \
            f"{time.monotonic() - keeper.last_beat:.0f} s ago"
        return f"heartbeat not recorded (last {since}): {keeper.last_error}"

    def about_instances(self) -> dict[str, Any]:
        """For /readyz: this instance, every live one with its last heartbeat and leases."""
        now = clock.now()
        leases = [lease for lease in self.store.list_leases() if lease.expires_at > now]
        return {
            "instance": self.store.instance_id,
            "leases_held": sorted(self.leases.held) if self.leases is not None else [],
            "instances": [
                {"id": i.id, "host": i.host, "pid": i.pid,
                 "heartbeat_age_s": round((now - i.heartbeat_at).total_seconds(), 1),
                 "leases": sorted(lease.name for lease in leases if lease.holder == i.id)}
                for i in self.store.list_instances() if i.alive(now)],
            "outbound_consumer": self._outbound_consumer_health(),
        }

    def _outbound_consumer_health(self) -> dict[str, Any] | None:
        """The consumer of the ERP's documents for partners, as /readyz shows it."""
        if self.outbound_bus is None:
            return None
        h = self.outbound_bus.health
        return {"connected": h.connected, "node": h.node, "received": h.received,
                "refused": h.refused, "returned": h.returned, "last_error": h.last_error,
                "last_success": h.last_success.isoformat() if h.last_success else None,
                "outage_since": h.outage_since.isoformat() if h.outage_since else None}

    def _silent_broker(self) -> str | None:
        """Why a broker connection counts as dead though open: nothing heard on it (not even
        a heartbeat) for more than two ``[broker] heartbeat`` intervals."""
        limit = 2 * self.settings.broker.heartbeat
        workers: tuple[tuple[str, OutboxPublisher | EventPublisher | None], ...] = (
            ("publisher", self.publisher), ("events", self.events))
        for name, worker in workers:
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
        waiting = self.store.transmissions_to_process(limit=1, this_instance=True)
        if not waiting:
            return None
        age = (clock.now() - aware(waiting[0].received_at)).total_seconds()
        if age <= limit:
            return None
        return (f"stalled: transmission {waiting[0].id} RECEIVED {age:.0f} s ago and nothing "
                f"processed for {idle:.0f} s")

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

    def _http_tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        from gateway.http.bounds import BodyPace
        from gateway.http.server import HttpServer, build_app

        h = self.settings.http
        if not h.enabled:
            return []
        routes, state = self.console_routes() if h.console else ([], {})
        app = build_app(endpoints=dict(self.endpoints), ready=self.ready_checks(),
                        max_body=h.max_body, max_json=h.max_json, public_url=h.public_url,
                        routes=routes, state=state, about=self.about_instances)
        try:
            self.http = HttpServer(app, h.host, h.port, header_timeout=h.header_timeout,
                                   keep_alive=h.keep_alive, max_connections=h.max_connections,
                                   body=BodyPace(timeout=h.body_timeout,
                                                 min_rate=h.min_body_rate))
        except OSError as exc:
            if any(run.needs_http for run in self.runs.values()):
                raise ConfigError(f"cannot listen on {h.host}:{h.port}: {exc.strerror}",
                                  file=self.settings.source, key="http.port") from exc
            # Health endpoints only: the gateway still does its work without them.
            log.warning("http_not_started", host=h.host, port=h.port, reason=exc.strerror,
                        hint="set [http] port to a free port, or enabled = false")
            return []
        return [asyncio.create_task(self.http.serve(stop), name="http")]

    # -- the tracker: ERP acknowledgements in, alerts out ---------------------------------

    def _tracker_tasks(self, stop: asyncio.Event) -> list[asyncio.Task[None]]:
        t = self.settings.tracker
        if not t.enabled:
            return []
        from gateway.bus.acks import AckConsumer
        from gateway.bus.events import EventPublisher
        from gateway.tracker.retention import purge

        b = self.settings.broker
        may_publish: Callable[[], bool] | None = None
        if self.leases is not None:
            may_publish = functools.partial(self.leases.holds, "events")
            self.leases.want("events")
        self.events = EventPublisher(self.store, b.urls, t.events_exchange,
                                     retry_initial=b.retry_initial, retry_max=b.retry_max,
                                     heartbeat=b.heartbeat, may_publish=may_publish)
        self.events.start()
        from gateway.channels.order_responses import order_responder

        answer = order_responder(self.store, self.intake, self.partners.get) \
            if self.intake is not None else None
        self.acks = AckConsumer(self.store, b.urls, t, heartbeat=b.heartbeat,
                                queue_type=b.queue_type, on_order_answered=answer)
        self.acks.start()
        def retention() -> object:
            return purge(self.store, self.archive, self.settings, self.partners)

        # Each runs on the instance holding its lease: started (and run at once) when the
        # lease is taken, stopped when it is lost.
        keeper = self.leases
        track: Callable[[asyncio.Event], Awaitable[None]] = self._track
        def values() -> None:
            # The manager page's rollups kept up to date (read on every request otherwise):
            # values over a year, traffic over the weeks the dropped clients compare; no page
            # pays for the documents a busy day brought.
            from gateway.core.zone import zone_of
            from gateway.store import traffic
            from gateway.store.values import refresh

            zone = zone_of(self.settings)
            refresh(self.store, zone, clock.now() - self.VALUES_SPAN)
            today = clock.now().astimezone(zone).date()
            monday = today - dt.timedelta(days=today.weekday())
            traffic.refresh(self.store, zone, monday - self.TRAFFIC_SPAN, today)

        purging = periodic_loop("retention", retention, 86400.0)
        valuing = periodic_loop("values", values, self.VALUES_EVERY)
        if keeper is not None:
            track, purging = keeper.leased("tracker", track), keeper.leased("retention", purging)
            valuing = keeper.leased("values", valuing)
        return [asyncio.create_task(supervised("tracker", lambda: track(stop), stop=stop),
                                    name="tracker"),
                asyncio.create_task(supervised("retention", lambda: purging(stop), stop=stop),
                                    name="retention"),
                asyncio.create_task(supervised("values", lambda: valuing(stop), stop=stop),
                                    name="values")]

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

    #: Seconds between looks for transmissions left RECEIVED outside the queue (those of
    #: instances found dead are taken at once), and how old the others must be to be taken.
    SWEEP_EVERY = 10.0
    SWEEP_AFTER = 60.0

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
            if time.monotonic() - swept > self.SWEEP_EVERY:
                # What was left RECEIVED outside the queue (an instance found dead, a
                # reprocess or an ingest cut short) is taken here, not at the next start.
                swept = time.monotonic()
                if await asyncio.to_thread(self.pipeline.sweep, self.SWEEP_AFTER):
                    self.last_progress = time.monotonic()
            if not held:
                try:
                    held.append(await asyncio.wait_for(queue.get(), timeout=0.5))
                except TimeoutError:
                    continue
                while len(held) < 256 and not queue.empty():
                    held.append(queue.get_nowait())
            outcomes = await asyncio.to_thread(self.pipeline.process_many, list(held))
            held.clear()
            self.last_progress = time.monotonic()
            self._processed(outcomes)  # mail replies, for one, go out at once
