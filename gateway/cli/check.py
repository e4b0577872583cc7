"""``edigw check-config``: validate settings, partner profiles and mappings together, and
print a summary of what is configured or every problem found. What each channel checks and
prints is its own (``gateway.channels.registry``); the checks themselves are
``gateway.channels.checks``, which the console's partner administration runs too."""

from __future__ import annotations

import sys

import click

from gateway.channels.registry import CHANNELS
from gateway.cli.common import CliContext, emit_json, json_option
from gateway.config import load_partners
from gateway.core.urls import mask_url


@click.command("check-config")
@json_option("One JSON document on stdout: ok, problems and what is configured "
             "(exit status 2 when a problem was found, as without --json).")
@click.pass_obj
def check_config(obj: CliContext, as_json: bool) -> None:
    """Validate settings, partner profiles and mappings; print a summary or what is wrong."""
    from gateway.channels.checks import check_config as check

    s = obj.settings
    directory = load_partners(s.partners)
    found = check(s, directory)
    problems = found.problems
    channels = [line for kind in CHANNELS for line in kind.summary(s, directory)]
    mapping_set = found.mappings
    sending = [p.id for p in directory if p.outbound.formats]
    outbound = "" if found.outbound is None else (
        f"outbound   {len(found.outbound)} mappings, sent on {', '.join(found.senders)}; "
        f"partners sent documents: {', '.join(sending) or 'none'}")
    if as_json:
        emit_json(dict(ok=not problems, problems=problems, settings=str(s.source),
                       store=mask_url(s.store.url),
                       broker=dict(urls=[mask_url(u) for u in s.broker.urls],
                                   exchange=s.broker.exchange, queue_type=s.broker.queue_type,
                                   queues={q.name: list(q.bindings) for q in s.broker.queues}),
                       archive=str(s.archive.path), channels=channels,
                       mappings=sorted(mapping_set.mappings) if mapping_set else [],
                       outbound=outbound, partners=[p.id for p in directory],
                       disabled=[d.as_json() for d in found.disabled]))
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
    assert mapping_set is not None and found.outbound is not None  # else a problem above
    click.echo(f"mappings   {len(mapping_set)} in {s.mappings}: {', '.join(sorted(mapping_set.mappings))}")
    click.echo(outbound)
    click.echo(f"partners   {len(directory)} in {s.partners}: {', '.join(p.id for p in directory)}")
    click.echo("configuration OK")
