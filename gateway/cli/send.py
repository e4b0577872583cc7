"""``edigw send``: hand a canonical document (the ERP's JSON) to a partner from the command
line: checked, rendered, recorded and delivered once right away, or (``--dry-run``) only
rendered and shown."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import CliContext, fail, open_gateway, setup_logs

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.channels.intake import OutboundResult


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--partner", help="The partner it is for (its profile says channel and format).")
@click.option("--format", "fmt", metavar="F",
              help="An outbound mapping id, or a syntax: ubl, cii, factur-x, csv, edifact "
                   "(default: the partner's profile).")
@click.option("--dry-run", is_flag=True,
              help="Print the rendered bytes on stdout; record and send nothing.")
@click.option("--price-list", "price_list", metavar="NAME",
              help="A price list partners subscribe to: send it to each subscriber.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--output", "output", metavar="DIR", type=click.Path(file_okay=False),
              help="With --dry-run: write each rendering into DIR (one file per document) "
                   "instead of stdout.")
@click.pass_obj
def send(obj: CliContext, file: str, partner: str | None, fmt: str | None, dry_run: bool,
         price_list: str | None, as_json: bool, output: str | None) -> None:
    """Send FILE (a canonical JSON document: invoice, order response, despatch advice,
    price list) to a partner. Exit status 1 when it was refused or its delivery failed."""
    setup_logs(obj.settings, "warning")
    path = Path(file)
    if not partner and not price_list:
        fail("give --partner (or --price-list for a price list's subscribers)")
    if partner and price_list and not dry_run:
        fail("give --partner or --price-list, not both (a dry run takes both: the list "
             "as that partner receives it)")
    gw = open_gateway(obj)
    try:
        if gw.intake is None:
            fail("this gateway has no outbound intake", 1)
        if path.stat().st_size > gw.intake.stream_above and partner and not dry_run:
            # A big document (a price list of many items): archived block by block and
            # read item by item, never whole in memory.
            big = gw.intake.accept_file(path, origin="cli", partner=partner, fmt=fmt,
                                        filename=path.name)
            if not big.failed and gw.outbound is not None:
                gw.outbound.deliver_pending()
            report = _after_delivery(gw, big)
            if as_json:
                click.echo(json.dumps(report, indent=2))
            else:
                _print(report)
            sys.exit(1 if report["status"] == "FAILED" else 0)
        data = path.read_bytes()
        documents = _documents(data)
        if len(documents) > 1:
            click.echo(f"edigw: {path.name} holds {len(documents)} documents: each is sent "
                       "on its own", err=True)
            if dry_run and output is None and not as_json:
                fail(f"{path.name} holds {len(documents)} documents: give --output DIR to "
                     "get one file for each (renderings are not concatenated)")
        if dry_run:
            if output is not None:
                Path(output).mkdir(parents=True, exist_ok=True)
            codes = [_dry_run(gw, doc, partner, price_list, fmt, as_json,
                              _target(output, path, n, len(documents)))
                     for n, doc in enumerate(documents, 1)]
            sys.exit(max(codes))
        results = []
        for doc in documents:
            if price_list:
                results += _distribute(gw, doc, price_list, path.name)
            else:
                results.append(gw.intake.accept(doc, origin="cli", ref=None, partner=partner,
                                                fmt=fmt, filename=path.name))
        if any(not r.failed for r in results) and gw.outbound is not None:
            gw.outbound.deliver_pending()
        reports = [_after_delivery(gw, r) for r in results]
    finally:
        gw.close()
    if as_json:
        click.echo(json.dumps(reports if len(reports) > 1 or price_list else reports[0],
                              indent=2))
    else:
        for report in reports:
            _print(report)
    sys.exit(1 if any(r["status"] == "FAILED" for r in reports) else 0)


def _documents(data: bytes) -> list[bytes]:
    """The documents of a file: a JSON list of several (as the mappings' expected files
    hold them) is each of them; anything else is one document, as it is."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return [data]
    if isinstance(parsed, list) and len(parsed) > 1 and all(isinstance(d, dict) for d in parsed):
        return [json.dumps(d).encode("utf-8") for d in parsed]
    return [data]


def _target(output: str | None, source: Path, n: int, count: int) -> Path | None:
    """Where the ``n``-th rendering of a dry run goes: None for stdout."""
    if output is None:
        return None
    stem = source.name.split(".")[0] + (f"-{n}" if count > 1 else "")
    return Path(output) / stem


def _dry_run(gw: Gateway, data: bytes, partner: str | None, price_list: str | None,
             fmt: str | None, as_json: bool, target: Path | None = None) -> int:
    assert gw.intake is not None
    if partner is None:
        subscribers = sorted(p.id for p in gw.partners
                             if p.enabled and price_list in p.outbound.price_lists)
        if not subscribers:
            click.echo(f"edigw: partner: no partner subscribes to price list {price_list!r}",
                       err=True)
            return 1
        partner = subscribers[0]
        click.echo(f"edigw: dry run for {partner}, the first of {len(subscribers)} "
                   f"subscriber(s) of {price_list!r}", err=True)
    result = gw.intake.dry_run(data, partner=partner, fmt=fmt)
    if result.failed:
        click.echo(f"edigw: {result.stage}: {result.reason}", err=True)
        if as_json:
            click.echo(json.dumps(result.as_dict(), indent=2))
        return 1
    rendered = result.rendered or b""
    if as_json:
        out: dict[str, Any] = result.as_dict()
        try:
            out["rendered"] = rendered.decode("utf-8")
        except UnicodeDecodeError:
            out["rendered_base64"] = base64.b64encode(rendered).decode("ascii")
        click.echo(json.dumps(out, indent=2))
    elif target is not None:
        suffix = _suffix(gw, result.mapping)
        written = target.with_name(target.name + suffix)
        written.write_bytes(rendered)
        click.echo(f"{written}  {result.doc_type} {result.number} as {result.mapping}, "
                   f"{len(rendered)} bytes", err=True)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(rendered)  # bytes as they are (a PDF too)
        sys.stdout.buffer.flush()
    return 0


def _suffix(gw: Gateway, mapping_id: str | None) -> str:
    assert gw.intake is not None
    mapping = gw.intake.mappings.mappings.get(mapping_id or "")
    return mapping.suffix if mapping is not None else ""


def _distribute(gw: Gateway, data: bytes, price_list: str, filename: str
                ) -> list[OutboundResult]:
    from gateway.channels.intake_routes import distributor_of

    lists = distributor_of(gw)
    if lists is None:
        fail("price lists are not distributed by this gateway (no price-list distributor)", 1)
    results = lists.distribute(data, list_id=price_list, origin="cli", ref=None)
    if not results:
        fail(f"no partner subscribes to price list {price_list!r}", 1)
    return results


def _after_delivery(gw: Gateway, result: OutboundResult) -> dict[str, Any]:
    """The result, with its transmission's status and its outbound row as they are now."""
    report = result.as_dict()
    if result.transmission_id is None:
        return report
    row = gw.store.get_transmission(result.transmission_id)
    if row is not None:
        report.update(status=row.status, stage=row.stage, reason=row.reason)
    outs = gw.store.outbound_of(result.transmission_id)
    if outs:
        out = outs[-1]
        report.update(outbound_id=out.id, filename=out.filename, control_ref=out.control_ref,
                      channel=out.channel, delivery=out.status, detail=out.detail,
                      last_error=out.last_error)
    return report


def _print(report: dict[str, Any]) -> None:
    head = (f"{report['transmission_id']}  {report['status']}  {report.get('doc_type') or '?'}"
            f" {report.get('number') or ''} for {report.get('partner') or '?'}")
    click.echo(" ".join(head.split()))
    if report["status"] == "FAILED":
        click.echo(f"  {report.get('stage')}: {report.get('reason')}")
        click.echo(f"edigw: {report.get('stage')}: {report.get('reason')}", err=True)
        return
    if report.get("repeat"):
        click.echo("  received before: nothing sent again")
    if report.get("control_ref"):
        click.echo(f"  control ref {report['control_ref']}, mapping {report.get('mapping')}")
    if report.get("delivery") in ("SENT", "DELIVERED"):
        click.echo(f"  {report['delivery'].lower()} by {report.get('channel')}: "
                   f"{report.get('detail')}")
    elif report.get("last_error"):
        click.echo(f"  not delivered yet ({report.get('channel')}): {report['last_error']}; "
                   "retried by edigw serve")
    else:
        click.echo(f"  waiting for delivery by {report.get('channel')} (edigw serve)")
