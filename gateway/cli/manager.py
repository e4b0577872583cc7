"""``edigw forecasts``: the manager's forecasts per partner, month and currency, imported
from CSV (``partner_id,month,currency,amount``) and listed against what was ordered."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path

import click

from gateway.cli.common import CliContext, fail, open_store, table


@click.group()
def forecasts() -> None:
    """Forecasts per partner, month and currency, against actual (the manager page)."""


@forecasts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", default=None, help="Who (default: the user running the command).")
@click.pass_obj
def forecasts_import(obj: CliContext, file: Path, by: str | None) -> None:
    """Import FILE, a CSV with the header partner_id,month,currency,amount (month YYYY-MM,
    currency ISO 4217). A forecast already there is replaced; one bad line and nothing is
    imported (the line, field and value are named)."""
    from gateway.config import load_partners
    from gateway.store.audit import AuditLog
    from gateway.store.forecasts import ForecastBook, ForecastError, parse_csv

    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text", 1)
    known = {p.id for p in load_partners(obj.settings.partners)}
    try:
        items = parse_csv(text, known=known)
    except ForecastError as exc:
        fail(f"{file}: nothing imported: {exc}", 1)
    store = open_store(obj)
    actor = f"cli:{by or getpass.getuser()}"
    saved = ForecastBook(store).put(items, by=actor)
    AuditLog(store).record(actor, "forecast.import", "forecasts",
                           after={"forecasts": saved, "file": file.name})
    click.echo(f"{saved} forecast(s) imported from {file}")


@forecasts.command("list")
@click.option("--from", "first", type=click.DateTime(["%Y-%m"]), default=None,
              help="First month, YYYY-MM (default: this month).")
@click.option("--to", "last", type=click.DateTime(["%Y-%m"]), default=None,
              help="Last month, YYYY-MM (default: the first).")
@click.option("--partner", default=None, help="Only this partner's.")
@click.option("--basis", type=click.Choice(["orders", "invoiced"]), default="orders",
              show_default=True, help="Compare with the order value or the value invoiced.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def forecasts_list(obj: CliContext, first: dt.datetime | None, last: dt.datetime | None,
                   partner: str | None, basis: str, as_json: bool) -> None:
    """The forecasts of the months asked, with the actual value and the gap (amount and
    per cent; negative: below the forecast). Months are those of [tracker] timezone."""
    from gateway.core import clock
    from gateway.core.zone import zone_of
    from gateway.store.read import manager as figures

    zone = zone_of(obj.settings)
    today = clock.now().astimezone(zone).date()
    a = (first.date() if first else today).strftime("%Y-%m")
    b = (last.date() if last else dt.date.fromisoformat(a + "-01")).strftime("%Y-%m")
    if b < a:
        fail(f"--to {b} comes before --from {a}", 1)
    try:
        figures.check_range(*figures.month_days(a, b))
    except figures.RangeError as exc:
        fail(str(exc), 1)
    rows = figures.forecast_gaps(open_store(obj), zone, a, b, today=today, partner=partner,
                                 basis="invoiced" if basis == "invoiced" else "orders")
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo(f"no forecast for {a}" + (f" … {b}" if b != a else "")
                   + (f" for {partner}" if partner else ""))
        return
    click.echo(table(
        ["month", "partner", "currency", "forecast", basis, "gap", "gap %", ""],
        [[r.month, r.partner_id, r.currency, f"{r.forecast:.2f}", f"{r.actual:.2f}",
          f"{r.gap:+.2f}", "-" if r.gap_percent is None else f"{r.gap_percent:+.1f}",
          "" if r.complete else "so far"] for r in rows]))
