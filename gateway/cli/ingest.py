"""``edigw ingest`` and ``edigw reprocess``: process files or replay transmissions from the
command line, then publish what they gave."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from gateway.cli.common import CliContext, fail, open_gateway, setup_logs
from gateway.core.status import TransmissionStatus
from gateway.core.urls import mask_url

if TYPE_CHECKING:
    from gateway.app import Gateway

#: The outcomes that went through (a HELD or PARTIAL one with a reason is reported apart).
_WENT_ON = (TransmissionStatus.PROCESSED, TransmissionStatus.PUBLISHED,
            TransmissionStatus.PARTIAL, TransmissionStatus.HELD)


class ProcessingOutcome(Protocol):
    """What processing one transmission gave, as the pipeline or a replay reports it."""

    @property
    def transmission_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def partner_id(self) -> str | None: ...
    @property
    def documents(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def reason(self) -> str | None: ...


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--partner", help="Partner id, when the file does not say who sent it.")
@click.option("--no-publish", is_flag=True, help="Only store; leave documents in the outbox.")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for broker confirms.")
@click.pass_obj
def ingest(obj: CliContext, files: tuple[str, ...], partner: str | None, no_publish: bool,
           wait: float) -> None:
    """Receive FILES as if dropped into the inbox, process them, publish the documents."""
    from gateway.core.ports import Incoming

    setup_logs(obj.settings, "warning")
    gw = open_gateway(obj)
    if partner and gw.partners.get(partner) is None:
        fail(f"unknown partner {partner!r} (see 'edigw partners list')")
    failed = 0
    try:
        for f in files:
            path = Path(f)
            # A large file is archived by streaming, never read whole.
            big = path.stat().st_size > obj.settings.processing.stream_above
            receipt = gw.pipeline.receive(Incoming(data=b"" if big else path.read_bytes(),
                                                   channel="cli", channel_ref=None,
                                                   filename=path.name, partner_hint=partner,
                                                   path=path if big else None))
            if receipt.duplicate_of:
                click.echo(f"{receipt.transmission_id}  {path.name}: DUPLICATE of "
                           f"{receipt.duplicate_of}, not processed again")
                continue
            failed += report(gw.pipeline.process(receipt.transmission_id), f"  {path.name}")
        if not no_publish:
            publish_outbox(gw, obj, wait)
    finally:
        gw.close()
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("transmission_ids", nargs=-1, required=True)
@click.option("--reason", required=True,
              help="Why (the mapping or profile fix); kept on both timelines.")
@click.option("--by", "by", default=None,
              help="Who asks (default: the user running the command).")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for broker confirms.")
@click.pass_obj
def reprocess(obj: CliContext, transmission_ids: tuple[str, ...], reason: str, by: str | None,
              wait: float) -> None:
    """Replay FAILED or QUARANTINED transmissions from the archive, after a fix.

    Each replay is a new attempt linked to the first (``reprocess_of``), recording who asked,
    when and why; the first keeps its outcome. A transmission some of whose messages failed
    is taken too: its failed messages are tried again, and the documents already published
    are recognised and not sent twice. A RECEIVED transmission (left by a crash) is simply
    processed. An outbound transmission (a document edigw sent) is sent again: rendered
    anew under a new transmission and control reference."""
    import dataclasses
    import getpass

    from gateway.core.reprocess import ReprocessError
    from gateway.core.reprocess import reprocess as replay
    from gateway.store.audit import AuditLog

    setup_logs(obj.settings, "warning")
    who = by or getpass.getuser()
    gw = open_gateway(obj)
    failed = 0
    try:
        for tid in transmission_ids:
            try:
                done = replay(gw, tid, by=who, reason=reason)
            except ReprocessError as exc:
                click.echo(f"{tid}: {exc}")
                if type(exc) is not ReprocessError:  # unknown, or its payload purged
                    failed += 1
                continue
            AuditLog(gw.store).record(f"cli:{who}", "transmission.reprocess",
                                      f"transmission:{done.transmission_id}",
                                      after={"attempt": done.attempt_id, "reason": reason,
                                             "status": done.status})
            if done.status in _OUTBOUND_WENT:  # an outbound transmission, sent again
                click.echo(f"{done.transmission_id}: sent again as {done.attempt_id}: "
                           f"{done.status} for partner {done.partner_id} (delivered by the "
                           "gateway's outbound loop)")
                continue
            if done.attempt_id != done.transmission_id:
                click.echo(f"{done.transmission_id}: replayed as {done.attempt_id}")
            failed += report(dataclasses.replace(done, transmission_id=done.attempt_id),
                             "  " if done.attempt_id != done.transmission_id else "")
        publish_outbox(gw, obj, wait)
    finally:
        gw.close()
    sys.exit(1 if failed else 0)


#: Where an outbound transmission sent again stands once rendered.
_OUTBOUND_WENT = (TransmissionStatus.RENDERED, TransmissionStatus.SENT,
                  TransmissionStatus.DELIVERED)


def report(out: ProcessingOutcome, label: str = "") -> int:
    """Print one processing outcome; 1 when it failed."""
    if out.reason and out.status not in _WENT_ON:
        click.echo(f"{out.transmission_id}{label}: {out.status} at {out.stage}: {out.reason}")
        return 1
    if out.status == TransmissionStatus.HELD and not out.reason:
        click.echo(f"{out.transmission_id}{label}: {out.documents} document(s) for partner "
                   f"{out.partner_id}, {out.queued} queued; HELD: a document conflicts with "
                   "one received before (edigw conflicts)")
        return 0
    if out.reason:  # some messages failed, the others went on
        click.echo(f"{out.transmission_id}{label}: {out.documents} message(s) for partner "
                   f"{out.partner_id}, {out.queued} queued; {out.reason}")
        return 1
    click.echo(f"{out.transmission_id}{label}: {out.documents} document(s) for partner "
               f"{out.partner_id}, {out.queued} queued")
    return 0


def publish_outbox(gw: Gateway, obj: CliContext, wait: float) -> None:
    """Publish what waits in the outbox and wait up to WAIT seconds for the broker's
    confirms; say so, on stderr, when the broker cannot be reached."""
    if not gw.store.outbox_size():
        return
    problem = gw.broker_problem()
    if problem:
        click.echo(f"broker not reachable at {mask_url(obj.settings.broker.url)} ({problem}); "
                   f"{gw.store.outbox_size()} document(s) wait in the outbox", err=True)
        return
    pub = gw.start_publisher()
    if pub.wait_idle(wait):
        click.echo("published: every document confirmed by the broker")
    else:
        click.echo(f"{gw.store.outbox_size()} document(s) still in the outbox after {wait}s",
                   err=True)
