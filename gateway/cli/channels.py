"""``edigw channels``: every channel configured, with the health the running gateway
recorded for it, the AS2 certificates' expiry, and the mappings and partners disabled
because their files (or a mapping a profile names) did not load."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import CliContext, emit_json, iso, json_option, open_store, table

if TYPE_CHECKING:
    from gateway.channels.as2.certificates import CertificateStatus


@click.command()
@json_option("One JSON document on stdout: a list of channels and certificates.")
@click.pass_obj
def channels(obj: CliContext, as_json: bool) -> None:
    """Every channel configured, with its health: last success, consecutive failures, last
    error (recorded by the running gateway)."""
    from gateway.channels.kind import ConfiguredChannel
    from gateway.channels.registry import CHANNELS
    from gateway.config import load_partners
    from gateway.store.channels import ChannelRecords

    store = open_store(obj)
    health = {h.channel: h for h in ChannelRecords(store).health()}
    settings = obj.settings
    partners = load_partners(settings.partners)
    configured: list[tuple[ConfiguredChannel, bool]] = [
        (c, kind.listens) for kind in CHANNELS for c in kind.configured(settings, partners)]
    names = {c.channel for c, _ in configured}
    configured += [(ConfiguredChannel(h.channel, h.kind, h.partner_id, "(no longer configured)"),
                    False) for h in health.values() if h.channel not in names]
    # Where several instances share the store, a polling channel runs on the one holding
    # its lease (``loop:<channel>``); a folder inbox runs on every instance.
    from gateway.core import clock

    now = clock.now()
    holders = {lease.name.removeprefix("loop:"): lease.holder for lease in store.list_leases()
               if lease.expires_at > now}
    rows: list[dict[str, Any]] = []
    for c, listens in configured:
        h = health.get(c.channel)
        state = ("listening" if h is None and listens else
                 "never ran" if h is None else "OK" if h.healthy else
                 f"FAILING x{h.consecutive_failures}" if h.consecutive_failures else "-")
        rows.append(dict(channel=c.channel, kind=c.kind, partner=c.partner_id, where=c.where,
                         state=state,
                         last_success=iso(h.last_success_at) if h else None,
                         last_attempt=iso(h.last_attempt_at) if h else None,
                         failures=h.consecutive_failures if h else 0,
                         last_error=h.last_error if h else None,
                         detail=h.detail if h else None,
                         instance=holders.get(c.channel)))
    certs: list[CertificateStatus] = []
    if settings.as2 is not None or any(p.as2 is not None for p in partners):
        from gateway.channels.as2.certificates import check_certificates

        certs = check_certificates(settings.as2, partners, store)
    for cert in certs:
        left = "" if cert.days_left is None else f", {cert.days_left} day(s) left"
        rows.append(dict(channel=f"certificate:{cert.id}", kind="certificate",
                         partner=cert.owner, where=cert.subject or "-",
                         state=cert.state.upper(), last_success=None,
                         failures=0 if cert.healthy else 1,
                         last_error=None if cert.healthy else (cert.detail or cert.state),
                         detail=(f"not after {cert.not_after.isoformat()}{left}"
                                 if cert.not_after else cert.detail)))
    # A mapping or partner whose configuration did not load is not in use: shown with why.
    from gateway.channels.checks import disabled_now

    for off in disabled_now(settings, partners):
        rows.append(dict(channel=f"{off.kind.replace(' ', '-')}:{off.name}", kind=off.kind,
                         partner=off.name if off.kind == "partner" else None, where=off.file,
                         state="DISABLED", last_success=None, failures=0,
                         last_error=off.reason, detail=None))
    if as_json:
        emit_json(rows)
        return
    click.echo(table(["channel", "partner", "where", "state", "last success", "last error"],
                     [[r["channel"], r["partner"] or "-", r["where"][:60], r["state"],
                       obj.shown(health[r["channel"]].last_success_at)
                      if r["channel"] in health else "-",
                       (r["last_error"] or r["detail"] or "-")[:60]
                       if r["kind"] == "certificate" else (r["last_error"] or "-")[:60]]
                      for r in rows]))
    # An error cut in the table is printed whole: a host-key refusal ends with both
    # fingerprints, the pinned and the presented one, which the operator needs to pin.
    for r in rows:
        if r["last_error"] and len(str(r["last_error"])) > 60:
            click.echo(f"last error of {r['channel']}: {r['last_error']}")
    running = [r for r in rows if r.get("instance")]
    if running:
        click.echo("run by: " + ", ".join(f"{r['channel']} on {r['instance']}" for r in running))
