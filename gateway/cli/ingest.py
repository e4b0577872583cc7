"""``edigw ingest`` and ``edigw reprocess``: process files or replay transmissions from the
command line, then publish what they gave."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from gateway.cli.common import (
    CliContext,
    draws_progress,
    emit_json,
    fail,
    json_option,
    open_gateway,
    progress,
    setup_logs,
)
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
@json_option("One JSON document on stdout: each file's outcome and what was published.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def ingest(obj: CliContext, files: tuple[str, ...], partner: str | None, no_publish: bool,
           wait: float, as_json: bool, quiet: bool) -> None:
    """Receive FILES as if dropped into the inbox, process them, publish the documents.

    On a terminal, a progress bar on stderr shows the files and bytes read and the
    documents mapped. Exit status 1 when a file failed."""
    from gateway.core.ports import Incoming

    setup_logs(obj.settings, "warning")
    gw = open_gateway(obj)
    if partner and gw.partners.get(partner) is None:
        fail(f"unknown partner {partner!r} (see 'edigw partners list')")
    failed = 0
    outcomes: list[dict[str, Any]] = []
    paths = [Path(f) for f in files]
    total = sum(p.stat().st_size for p in paths)
    mapped = 0
    try:
        with progress(draws_progress(as_json=as_json, quiet=quiet), bytes_done=True) as bar:
            task = bar.task(f"{len(paths)} file(s)", total=total)
            label = ""
            in_file = 0

            def one_more() -> None:  # each document of the file as it is mapped
                nonlocal in_file
                in_file += 1
                bar.describe(task, f"{label}, {mapped + in_file} document(s) mapped")

            if bar.drawn:
                gw.pipeline.on_document = one_more
            for n, path in enumerate(paths, 1):
                label, in_file = f"file {n}/{len(paths)} {path.name[:30]}", 0
                bar.describe(task, f"{label}, {mapped} document(s) mapped")
                # A large file is archived by streaming, never read whole.
                big = path.stat().st_size > obj.settings.processing.stream_above
                receipt = gw.pipeline.receive(Incoming(
                    data=b"" if big else path.read_bytes(), channel="cli", channel_ref=None,
                    filename=path.name, partner_hint=partner, path=path if big else None))
                if receipt.duplicate_of:
                    outcomes.append(dict(file=path.name, transmission_id=receipt.transmission_id,
                                         status="DUPLICATE", duplicate_of=receipt.duplicate_of))
                    if not as_json:
                        click.echo(f"{receipt.transmission_id}  {path.name}: DUPLICATE of "
                                   f"{receipt.duplicate_of}, not processed again")
                else:
                    out = gw.pipeline.process(receipt.transmission_id)
                    mapped += out.documents
                    outcomes.append(dict(file=path.name, **outcome(out)))
                    failed += report(out, f"  {path.name}", echo=not as_json)
                bar.advance(task, path.stat().st_size)
            bar.describe(task, f"{len(paths)} file(s), {mapped} document(s) mapped")
        published = None if no_publish else publish_outbox(gw, obj, wait, echo=not as_json)
    finally:
        gw.close()
    if as_json:
        emit_json(dict(transmissions=outcomes, documents=mapped, failed=failed,
                       published=published))
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("transmission_ids", nargs=-1, required=True)
@click.option("--reason", required=True,
              help="Why (the mapping or profile fix); kept on both timelines.")
@click.option("--by", "by", default=None,
              help="Who asks (default: the user running the command).")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for broker confirms.")
@json_option("One JSON document on stdout: each replay's outcome and what was published.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def reprocess(obj: CliContext, transmission_ids: tuple[str, ...], reason: str, by: str | None,
              wait: float, as_json: bool, quiet: bool) -> None:
    """Replay FAILED or QUARANTINED transmissions from the archive, after a fix.

    Each replay is a new attempt linked to the first (``reprocess_of``), recording who asked,
    when and why; the first keeps its outcome. A transmission some of whose messages failed
    is taken too: its failed messages are tried again, and the documents already published
    are recognised and not sent twice. A RECEIVED transmission (left by a crash) is simply
    processed. An outbound transmission (a document edigw sent) is sent again: rendered
    anew under a new transmission and control reference. On a terminal, a progress bar on
    stderr counts the transmissions done. Exit status 1 when one failed or is unknown."""
    import dataclasses
    import getpass

    from gateway.core.reprocess import ReprocessError
    from gateway.core.reprocess import reprocess as replay
    from gateway.store.audit import AuditLog

    setup_logs(obj.settings, "warning")
    who = by or getpass.getuser()
    gw = open_gateway(obj)
    failed = 0
    outcomes: list[dict[str, Any]] = []
    echo = not as_json
    try:
        with progress(draws_progress(as_json=as_json, quiet=quiet)) as bar:
            task = bar.task("transmissions", total=len(transmission_ids))
            for tid in transmission_ids:
                bar.advance(task, 0)
                try:
                    done = replay(gw, tid, by=who, reason=reason)
                except ReprocessError as exc:
                    refused = type(exc) is not ReprocessError  # unknown, or payload purged
                    outcomes.append(dict(transmission_id=tid, status="REFUSED", reason=str(exc),
                                         failed=refused))
                    if echo:
                        click.echo(f"{tid}: {exc}")
                    failed += refused
                    bar.advance(task)
                    continue
                AuditLog(gw.store).record(f"cli:{who}", "transmission.reprocess",
                                          f"transmission:{done.transmission_id}",
                                          after={"attempt": done.attempt_id, "reason": reason,
                                                 "status": done.status})
                attempt = dataclasses.replace(done, transmission_id=done.attempt_id)
                outcomes.append(dict(outcome(attempt), transmission_id=done.transmission_id,
                                     attempt_id=done.attempt_id))
                bar.advance(task)
                if done.status in _OUTBOUND_WENT:  # an outbound transmission, sent again
                    if echo:
                        click.echo(f"{done.transmission_id}: sent again as {done.attempt_id}: "
                                   f"{done.status} for partner {done.partner_id} (delivered by "
                                   "the gateway's outbound loop)")
                    continue
                if done.attempt_id != done.transmission_id and echo:
                    click.echo(f"{done.transmission_id}: replayed as {done.attempt_id}")
                failed += report(attempt, "  " if done.attempt_id != done.transmission_id
                                 else "", echo=echo)
        published = publish_outbox(gw, obj, wait, echo=echo)
    finally:
        gw.close()
    if as_json:
        emit_json(dict(transmissions=outcomes, failed=failed, published=published))
    sys.exit(1 if failed else 0)


#: Where an outbound transmission sent again stands once rendered.
_OUTBOUND_WENT = (TransmissionStatus.RENDERED, TransmissionStatus.SENT,
                  TransmissionStatus.DELIVERED)


def outcome(out: ProcessingOutcome) -> dict[str, Any]:
    """One processing outcome for ``--json``; ``failed`` as ``report`` counts it (a reason:
    the transmission failed, or some of its messages did)."""
    return dict(transmission_id=out.transmission_id, status=str(out.status),
                partner_id=out.partner_id, documents=out.documents, queued=out.queued,
                stage=out.stage, reason=out.reason, failed=bool(out.reason))


def report(out: ProcessingOutcome, label: str = "", *, echo: bool = True) -> int:
    """Print one processing outcome (unless not ECHO); 1 when it failed."""
    def say(text: str) -> None:
        if echo:
            click.echo(text)

    if out.reason and out.status not in _WENT_ON:
        say(f"{out.transmission_id}{label}: {out.status} at {out.stage}: {out.reason}")
        return 1
    if out.status == TransmissionStatus.HELD and not out.reason:
        say(f"{out.transmission_id}{label}: {out.documents} document(s) for partner "
            f"{out.partner_id}, {out.queued} queued; HELD: a document conflicts with "
            "one received before (edigw conflicts)")
        return 0
    if out.reason:  # some messages failed, the others went on
        say(f"{out.transmission_id}{label}: {out.documents} message(s) for partner "
            f"{out.partner_id}, {out.queued} queued; {out.reason}")
        return 1
    say(f"{out.transmission_id}{label}: {out.documents} document(s) for partner "
        f"{out.partner_id}, {out.queued} queued")
    return 0


def publish_outbox(gw: Gateway, obj: CliContext, wait: float, *, echo: bool = True
                   ) -> dict[str, Any]:
    """Publish what waits in the outbox and wait up to WAIT seconds for the broker's
    confirms; say so (problems on stderr) unless not ECHO. Returns what happened:
    ``confirmed`` (all confirmed), ``waiting`` (documents left), ``problem``."""
    if not gw.store.outbox_size():
        return dict(confirmed=True, waiting=0, problem=None)
    problem = gw.broker_problem()
    if problem:
        waiting = gw.store.outbox_size()
        if echo:
            click.echo(f"broker not reachable at {mask_url(obj.settings.broker.url)} "
                       f"({problem}); {waiting} document(s) wait in the outbox", err=True)
        return dict(confirmed=False, waiting=waiting, problem=problem)
    pub = gw.start_publisher()
    if pub.wait_idle(wait):
        if echo:
            click.echo("published: every document confirmed by the broker")
        return dict(confirmed=True, waiting=0, problem=None)
    waiting = gw.store.outbox_size()
    if echo:
        click.echo(f"{waiting} document(s) still in the outbox after {wait}s", err=True)
    return dict(confirmed=False, waiting=waiting, problem=f"not confirmed within {wait}s")
