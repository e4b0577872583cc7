"""``edigw check-config``: validate settings, partner profiles and mappings together, and
print a summary of what is configured or every problem found. What each channel checks and
prints is its own (``gateway.channels.registry``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway.channels.registry import CHANNELS
from gateway.cli.common import CliContext, emit_json, json_option
from gateway.config import PartnerDirectory, load_partners
from gateway.core.urls import mask_url


@click.command("check-config")
@json_option("One JSON document on stdout: ok, problems and what is configured "
             "(exit status 2 when a problem was found, as without --json).")
@click.pass_obj
def check_config(obj: CliContext, as_json: bool) -> None:
    """Validate settings, partner profiles and mappings; print a summary or what is wrong."""
    from gateway.formats.mapping import MappingSet

    s = obj.settings
    directory = load_partners(s.partners)
    mapping_set = MappingSet.load(Path(s.mappings))
    problems = []
    for p in directory:
        for d in p.documents:
            if d.mapping and d.mapping not in mapping_set.mappings:
                problems.append(f"{p.source}: documents: mapping {d.mapping!r} does not exist "
                                f"under {s.mappings}")
    for kind in CHANNELS:
        problems += kind.problems(s, directory)
    outbound = _outbound(obj, directory, problems)
    channels = [line for kind in CHANNELS for line in kind.summary(s, directory)]
    if as_json:
        emit_json(dict(ok=not problems, problems=problems, settings=str(s.source),
                       store=mask_url(s.store.url),
                       broker=dict(urls=[mask_url(u) for u in s.broker.urls],
                                   exchange=s.broker.exchange, queue_type=s.broker.queue_type,
                                   queues={q.name: list(q.bindings) for q in s.broker.queues}),
                       archive=str(s.archive.path), channels=channels,
                       mappings=sorted(mapping_set.mappings), outbound=outbound,
                       partners=[p.id for p in directory]))
        if problems:
            sys.exit(2)
        return
    if problems:
        for line in problems:
            click.echo(f"edigw: {line}", err=True)
        sys.exit(2)
    click.echo(f"settings   {s.source}")
    click.echo(f"store      {mask_url(s.store.url)}")
    click.echo(f"broker     {', '.join(mask_url(u) for u in s.broker.urls)} exchange "
               f"{s.broker.exchange}, {s.broker.queue_type} queues "
               + ", ".join(f"{q.name} <- {' '.join(q.bindings)}" for q in s.broker.queues))
    click.echo(f"archive    {s.archive.path}")
    for line in channels:
        click.echo(line)
    click.echo(f"mappings   {len(mapping_set)} in {s.mappings}: {', '.join(sorted(mapping_set.mappings))}")
    click.echo(outbound)
    click.echo(f"partners   {len(directory)} in {s.partners}: {', '.join(p.id for p in directory)}")
    click.echo("configuration OK")


def _outbound(obj: CliContext, directory: PartnerDirectory, problems: list[str]) -> str:
    """Adds what is wrong in what partners are sent; returns the summary line."""
    from gateway.channels.intake import outbound_problems
    from gateway.core.errors import EdigwError
    from gateway.formats.render import OutboundMappings

    s = obj.settings
    try:
        mappings = OutboundMappings.load(Path(s.mappings))
    except EdigwError as exc:
        problems.append(f"outbound mappings: {exc}")
        return ""
    # The channels that can send: the folder always, the others when configured (a sender
    # is made only to be counted: AS2 loads our keys, a bad key is a problem here too).
    senders = ["folder"]
    for kind in CHANNELS:
        if kind.sender is None:
            continue
        try:
            made = kind.sender(s)
        except EdigwError as exc:
            problems.append(f"{kind.name}: cannot send: {exc}")
            continue
        if made is not None:
            senders.append(kind.name)
            closer = getattr(made, "close", None)
            if closer is not None:
                closer()
    problems += outbound_problems(directory, mappings, sender_id=s.outbound.sender_id,
                                  senders=senders)
    sending = [p.id for p in directory if p.outbound.formats]
    return (f"outbound   {len(mappings)} mappings, sent on {', '.join(senders)}; partners "
            f"sent documents: {', '.join(sending) or 'none'}")
