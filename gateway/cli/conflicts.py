"""``edigw conflicts``: documents held because their number was received before with other
content; list them with what differs, release or reject one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import click

from gateway.cli.common import CliContext, emit_json, fail, json_option, open_store, table
from gateway.core.status import DocumentStatus

if TYPE_CHECKING:
    from gateway.store.conflicts import ConflictDesk


def _desk(obj: CliContext) -> ConflictDesk:
    """The conflicts of the configured store."""
    from gateway.store.conflicts import ConflictDesk

    return ConflictDesk(open_store(obj))


@click.group(invoke_without_command=True)
@click.option("--partner", default=None, help="Only this partner's.")
@click.option("--rejected", is_flag=True, help="The conflicts rejected, not those waiting.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def conflicts(ctx: click.Context, partner: str | None, rejected: bool, limit: int,
              as_json: bool) -> None:
    """Documents held as CONFLICT (same number as one received before, other content);
    see also 'conflicts show', 'conflicts release' and 'conflicts reject'."""
    if ctx.invoked_subcommand is not None:
        return
    _list(ctx.obj, partner, rejected, limit, as_json)


@conflicts.command("list")
@click.option("--partner", default=None, help="Only this partner's.")
@click.option("--rejected", is_flag=True, help="The conflicts rejected, not those waiting.")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def conflicts_list(obj: CliContext, partner: str | None, rejected: bool, limit: int,
                   as_json: bool) -> None:
    """The conflicts waiting for an operator, newest first, with what differs."""
    _list(obj, partner, rejected, limit, as_json)


def _list(obj: CliContext, partner: str | None, rejected: bool, limit: int,
          as_json: bool) -> None:
    """The conflicts waiting (or rejected), as a table or JSON."""
    wanted = DocumentStatus.REJECTED if rejected else DocumentStatus.CONFLICT
    found = _desk(obj).list(partner=partner, limit=limit, status=wanted)
    if as_json:
        emit_json([c.as_dict() for c in found])
        return
    if not found:
        click.echo("no conflicts" + (" rejected" if rejected else " waiting"))
        return
    click.echo(table(["document", "partner", "type", "number", "received",
                      "earlier", "differences"],
                     [[c.document.id, c.document.partner_id, c.document.doc_type,
                       c.document.business_number or "-", obj.shown(c.document.created_at),
                       c.document.conflict_of or "-", c.comparison.summary(2)[:90]]
                      for c in found]))


@conflicts.command("show")
@click.argument("document_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def conflicts_show(obj: CliContext, document_id: str, as_json: bool) -> None:
    """One conflict: both documents and every difference (path, earlier, this one)."""
    from gateway.store.conflicts import ConflictError

    try:
        c = _desk(obj).get(document_id)
    except ConflictError as exc:
        fail(str(exc), 1)
    if as_json:
        emit_json(c.as_dict())
        return
    doc, earlier = c.document, c.earlier
    click.echo(f"document     {doc.id}  {doc.status}  {doc.doc_type} "
               f"{doc.business_number or '-'} from {doc.partner_id}")
    click.echo(f"transmission {doc.transmission_id}, received "
               f"{obj.shown(doc.created_at)}, message id {doc.message_id}")
    if doc.reason:
        click.echo(f"reason       {doc.reason}")
    if earlier is not None:
        click.echo(f"earlier      {earlier.id}  {earlier.status}  transmission "
                   f"{earlier.transmission_id}, received {obj.shown(earlier.created_at)}, "
                   f"message id {earlier.message_id}")
    click.echo(f"\n{c.comparison.total} difference(s)")
    if c.comparison.differences:
        click.echo(table(["field", "earlier", "this one"],
                         [[d.path, d.before or "(none)", d.after or "(none)"]
                          for d in c.comparison.differences]))
    if c.comparison.total > len(c.comparison.differences):
        click.echo(f"… and {c.comparison.total - len(c.comparison.differences)} more")


def _decide(obj: CliContext, action: Literal["release", "reject"], document_id: str,
            by: str | None, reason: str | None, as_json: bool = False) -> None:
    """Release or reject DOCUMENT_ID as BY (default: the user running the command) and say
    where the document and its transmission now stand."""
    import getpass

    from gateway.store.conflicts import ConflictError

    desk = _desk(obj)
    who = by or getpass.getuser()
    try:
        if action == "reject":
            doc = desk.reject(document_id, by=who, reason=reason or "")
        else:
            doc = desk.release(document_id, by=who, reason=reason)
    except ConflictError as exc:
        fail(str(exc), 1)
    t = desk.store.get_transmission(doc.transmission_id)
    if as_json:
        emit_json(dict(document_id=doc.id, status=str(doc.status), action=action, by=who,
                       reason=reason, transmission_id=doc.transmission_id,
                       transmission_status=str(t.status) if t else None))
        return
    click.echo(f"document {doc.id} {doc.status}"
               + (" (queued for publishing)" if doc.status == DocumentStatus.PENDING else "")
               + f"; transmission {doc.transmission_id} {t.status if t else '?'}")


@conflicts.command("release")
@click.argument("document_id")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@click.option("--by", default=None, help="Who (default: the user running the command).")
@json_option("One JSON document on stdout: where the document and its transmission stand.")
@click.pass_obj
def conflicts_release(obj: CliContext, document_id: str, reason: str | None,
                      by: str | None, as_json: bool) -> None:
    """Publish a held conflict (under its own message id: the ERP gets both documents)."""
    _decide(obj, "release", document_id, by, reason, as_json)


@conflicts.command("reject")
@click.argument("document_id")
@click.option("--reason", required=True, help="Why it is not published (required).")
@click.option("--by", default=None, help="Who (default: the user running the command).")
@json_option("One JSON document on stdout: where the document and its transmission stand.")
@click.pass_obj
def conflicts_reject(obj: CliContext, document_id: str, reason: str, by: str | None,
                     as_json: bool) -> None:
    """Reject a held conflict: REJECTED with the reason, never published."""
    _decide(obj, "reject", document_id, by, reason, as_json)
