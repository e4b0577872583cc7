"""``edigw channels``: every channel configured, with the health the running gateway
recorded for it, and the AS2 certificates' expiry."""

from __future__ import annotations

import json
from typing import Any

import click

from gateway.cli.common import CliContext, open_store, table


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def channels(obj: CliContext, as_json: bool) -> None:
    """Every channel configured, with its health: last success, consecutive failures, last
    error (recorded by the running gateway)."""
    from gateway.config import load_partners
    from gateway.store.channels import ChannelRecords

    store = open_store(obj)
    health = {h.channel: h for h in ChannelRecords(store).health()}
    settings = obj.settings
    configured: list[tuple[str, str, str | None, str]] = []
    for inbox in settings.inbox:
        configured.append((f"folder:{inbox.path}", "folder", inbox.partner, str(inbox.path)))
    partners = load_partners(settings.partners)
    for partner in partners:
        if partner.sftp is not None:
            where = f"{partner.sftp.user}@{partner.sftp.host}:{partner.sftp.port}"
            configured.append((f"sftp:{partner.id}", "sftp", partner.id, where))
    for box in settings.mailboxes:
        configured.append((f"imap:{box.name}", "imap", None,
                           f"{box.user}@{box.host}:{box.port}/{box.folder}"))
    if settings.smtp is not None:
        configured.append(("smtp", "smtp", None, f"{settings.smtp.host}:{settings.smtp.port}"))
    listen = f"http://{settings.http.host}:{settings.http.port}"
    if settings.as2 is not None:
        ours = ", ".join(i.as2_id for i in settings.as2.identities) or "no identity"
        configured.append(("as2", "as2", None, f"POST {listen}/as2 as {ours}"))
    for partner in partners:
        if partner.as2 is not None:
            configured.append((f"as2:{partner.id}", "as2", partner.id,
                               f"AS2-From {partner.as2.as2_id}"))
    if settings.sms is not None:
        for provider in ("twilio", "vonage"):
            if getattr(settings.sms, provider) is not None:
                configured.append((f"sms:{provider}", "sms", None,
                                   f"POST {listen}/sms/{provider}"))
    names = {c[0] for c in configured}
    configured += [(h.channel, h.kind, h.partner_id, "(no longer configured)")
                   for h in health.values() if h.channel not in names]
    rows: list[dict[str, Any]] = []
    for channel, kind, partner, where in configured:
        h = health.get(channel)
        state = ("listening" if h is None and kind in ("as2", "sms") else
                 "never ran" if h is None else "OK" if h.healthy else
                 f"FAILING x{h.consecutive_failures}" if h.consecutive_failures else "-")
        rows.append(dict(channel=channel, kind=kind, partner=partner, where=where,
                         state=state,
                         last_success=h.last_success_at.isoformat() if h and h.last_success_at
                         else None,
                         failures=h.consecutive_failures if h else 0,
                         last_error=h.last_error if h else None,
                         detail=h.detail if h else None))
    certs = []
    if settings.as2 is not None or any(p.as2 is not None for p in partners):
        from gateway.channels.as2.certificates import check_certificates

        certs = check_certificates(settings.as2, partners, store)
    for c in certs:
        left = "" if c.days_left is None else f", {c.days_left} day(s) left"
        rows.append(dict(channel=f"certificate:{c.id}", kind="certificate", partner=c.owner,
                         where=c.subject or "-", state=c.state.upper(), last_success=None,
                         failures=0 if c.healthy else 1,
                         last_error=None if c.healthy else (c.detail or c.state),
                         detail=(f"not after {c.not_after.isoformat()}{left}" if c.not_after
                                 else c.detail)))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(table(["channel", "partner", "where", "state", "last success", "last error"],
                     [[r["channel"], r["partner"] or "-", r["where"][:60], r["state"],
                       (r["last_success"] or "-")[:19],
                       (r["last_error"] or r["detail"] or "-")[:60]
                       if r["kind"] == "certificate" else (r["last_error"] or "-")[:60]]
                      for r in rows]))
    # An error cut in the table is printed whole: a host-key refusal ends with both
    # fingerprints, the pinned and the presented one, which the operator needs to pin.
    for r in rows:
        if r["last_error"] and len(str(r["last_error"])) > 60:
            click.echo(f"last error of {r['channel']}: {r['last_error']}")
