"""``edigw partners``: list, show and add partner profiles (config/partners/*.toml); their
onboarding state and go-live checklist (``state``, ``checklist``; docs/onboarding.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from gateway.cli.common import CliContext, fail, open_gateway, open_store, setup_logs, table
from gateway.config import (
    PARTNER_STATES,
    DocumentSettings,
    Identifiers,
    Partner,
    UnbIdentifier,
    load_partners,
    partner_toml,
)

if TYPE_CHECKING:
    from gateway.formats.mapping import MappingSet


@click.group()
def partners() -> None:
    """Partner profiles (config/partners/*.toml)."""


@partners.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_list(obj: CliContext, as_json: bool) -> None:
    """Every partner profile."""
    directory = load_partners(obj.settings.partners)
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") for p in directory], indent=2))
        return
    click.echo(table(["id", "name", "state", "unb sender ids", "channels", "documents"],
                     [[p.id, p.name, p.state,
                       ", ".join(u.id + (f":{u.qualifier}" if u.qualifier else "")
                                 for u in p.identifiers.unb) or "-",
                       ", ".join(p.channels), ", ".join(d.type for d in p.documents) or "-"]
                      for p in directory]))
    for problem in directory.problems:  # left out: edigw check-config lists every problem
        click.echo(f"edigw: partner {problem.partner_id} disabled: {problem}", err=True)


@partners.command("show")
@click.argument("partner_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_show(obj: CliContext, partner_id: str, as_json: bool) -> None:
    """One partner profile."""
    p = load_partners(obj.settings.partners).get(partner_id)
    if p is None:
        fail(f"no partner {partner_id!r}", 1)
    if as_json:
        click.echo(json.dumps(p.model_dump(mode="json"), indent=2))
    else:
        click.echo(f"# {p.source}\n{partner_toml(p)}", nl=False)


def _unb(value: str) -> UnbIdentifier:
    """``ID`` or ``ID:QUALIFIER`` as given to ``--unb``."""
    ident, _, qual = value.partition(":")
    return UnbIdentifier(id=ident, qualifier=qual or None)


def _format_of(mapping_set: MappingSet, mapping_id: str) -> str:
    """The format the mapping ``mapping_id`` reads (``edifact``, ``xml``, ``csv``), which
    the profile must declare with it; ``edifact`` for a mapping not found (check-config's
    checks then say it does not exist)."""
    broken = mapping_set.broken.get(mapping_id)
    if broken is not None:
        fail(f"mapping {mapping_id!r} is disabled: {broken}", 1)
    found = mapping_set.mappings.get(mapping_id)
    return str(getattr(found, "format", "edifact")) if found is not None else "edifact"


@partners.command("add")
@click.argument("partner_id")
@click.option("--name", required=True)
@click.option("--unb", "unb", multiple=True, help="UNB sender id, optionally ID:QUALIFIER (e.g. 5412345000013:14).")
@click.option("--gln", multiple=True)
@click.option("--vat", multiple=True)
@click.option("--email", multiple=True)
@click.option("--mapping", "mappings", multiple=True, help="TYPE=MAPPING_ID, e.g. order=eancom-orders-d96a.")
@click.pass_obj
def partners_add(obj: CliContext, partner_id: str, name: str, unb: tuple[str, ...],
                 gln: tuple[str, ...], vat: tuple[str, ...], email: tuple[str, ...],
                 mappings: tuple[str, ...]) -> None:
    """Add a partner profile (written to config/partners/PARTNER_ID.toml)."""
    from pydantic import ValidationError

    folder = Path(obj.settings.partners)
    target = folder / f"{partner_id}.toml"
    if target.exists():
        fail(f"partner {partner_id!r} exists already ({target})", 1)
    docs = []
    mapping_set = None
    for m in mappings:
        doc_type, sep, mapping_id = m.partition("=")
        if not sep:
            raise click.BadParameter(f"{m!r}: expected TYPE=MAPPING_ID", param_hint="--mapping")
        if mapping_set is None:
            from gateway.formats.mapping import MappingSet

            mapping_set = MappingSet.load(Path(obj.settings.mappings))
        docs.append({"type": doc_type, "format": _format_of(mapping_set, mapping_id),
                     "mapping": mapping_id})
    try:
        documents = [DocumentSettings.model_validate(d) for d in docs]
        partner = Partner.model_validate({
            "id": partner_id, "name": name, "documents": documents,
            "identifiers": Identifiers(unb=[_unb(u) for u in unb], gln=list(gln),
                                       vat=list(vat), email=list(email))})
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']} (value {err.get('input')!r})")
    from gateway.channels.checks import added_problems
    from gateway.config import PartnerDirectory

    # Judged as check-config would before anything is written (as the console's changes).
    current = load_partners(folder)
    partner = partner.model_copy(update={"source": str(target)})
    added = added_problems(obj.settings, current, PartnerDirectory([*current, partner]))
    if added:
        fail("edigw check-config would refuse it: " + "; ".join(added), 1)
    folder.mkdir(parents=True, exist_ok=True)
    known = {p.file for p in current.problems}
    target.write_text(partner_toml(partner))
    loaded = load_partners(folder)  # the new profile must not clash with the others
    clash = loaded.problem_of(target) or next(
        (p for p in loaded.problems if p.file not in known), None)
    if clash is not None:
        target.unlink()
        if clash.error is not None:
            raise clash.error
        fail(str(clash))
    click.echo(f"partner {partner_id} added: {target}")


@partners.command("checklist")
@click.argument("partner_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_checklist(obj: CliContext, partner_id: str, as_json: bool) -> None:
    """The go-live checklist of PARTNER_ID: each item done or not, and why.

    Exit status 0 when every item is done, 1 when something is missing."""
    from gateway.tracker.onboarding import checklist

    partner = load_partners(obj.settings.partners).get(partner_id)
    if partner is None:
        fail(f"no partner {partner_id!r}", 1)
    store = open_store(obj)
    try:
        items = checklist(store, partner)
    finally:
        store.close()
    ready = all(i.ok for i in items)
    if as_json:
        click.echo(json.dumps({"partner": partner.id, "state": partner.state, "ready": ready,
                               "items": [i.as_dict() for i in items]}, indent=2))
    else:
        click.echo(f"partner {partner.id}: {partner.state}, "
                   + ("ready to go live" if ready else "not ready to go live"))
        for i in items:
            click.echo(f"  [{'x' if i.ok else ' '}] {i.name}: {i.detail}")
    sys.exit(0 if ready else 1)


@partners.command("state")
@click.argument("partner_id")
@click.argument("state", type=click.Choice(PARTNER_STATES))
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@click.option("--force", is_flag=True,
              help="Go live although the go-live checklist is not complete.")
@click.option("--by", "by", default=None, help="Who asks (default: the user running it).")
@click.option("--wait", default=10.0, show_default=True,
              help="Seconds to wait for broker confirms of what going live released.")
@click.pass_obj
def partners_state(obj: CliContext, partner_id: str, state: str, reason: str, force: bool,
                   by: str | None, wait: float) -> None:
    """Move PARTNER_ID to STATE (draft, test, live, suspended), audited as partner.state.

    Going live from draft or test is refused while the go-live checklist is not complete
    (the missing items are listed) unless --force. Going live processes the files held
    while the partner was suspended and publishes what they gave."""
    import getpass

    from gateway.cli.ingest import publish_outbox
    from gateway.store.audit import AuditLog
    from gateway.tracker.onboarding import release_held
    from gateway.web.partners_admin import NotReady, PartnerAdmin, PartnerAdminError

    setup_logs(obj.settings, "warning")
    who = by or getpass.getuser()
    gw = open_gateway(obj)
    try:
        admin = PartnerAdmin(obj.settings, audit=AuditLog(gw.store),
                             on_change=gw.partners_changed,
                             secrets_dir=obj.settings.secrets_dir,
                             certs_dir=obj.settings.certs_dir)

        def release(pid: str) -> int:
            return len(release_held(gw, pid, by=who, reason=reason))

        try:
            shown = admin.set_state(f"cli:{who}", partner_id, state, reason=reason,
                                    force=force, release=release)
        except NotReady as exc:
            click.echo(f"edigw: partner {partner_id} is not ready to go live; missing:",
                       err=True)
            for i in exc.missing:
                click.echo(f"  - {i.name}: {i.detail}", err=True)
            click.echo("(--force with a --reason goes live anyway)", err=True)
            sys.exit(1)
        except PartnerAdminError as exc:
            fail(str(exc), 1)
        click.echo(f"partner {partner_id}: {shown['state']}"
                   + (f"; {shown['released']} held file(s) released" if shown["released"]
                      else ""))
        if shown["released"]:
            publish_outbox(gw, obj, wait)
    finally:
        gw.close()


@partners.command("senders")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_senders(obj: CliContext, as_json: bool) -> None:
    """Unknown senders of quarantined files: each with its key (for ``partners adopt``),
    how many files wait, when the first and last came, and some file names."""
    from gateway.web.adopt import unknown_senders

    store = open_store(obj)
    try:
        found = unknown_senders(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([g.as_dict() for g in found], indent=2))
        return
    if not found:
        click.echo("no quarantined file of an unknown sender")
        return
    from gateway.core.zone import shown, zone_of

    zone = zone_of(obj.settings)
    click.echo(table(["sender key", "who", "files", "first", "last", "some files"],
                     [[g.key, g.sender.label, str(g.count), shown(g.first_at, zone, seconds=False),
                       shown(g.last_at, zone, seconds=False), ", ".join(g.samples)]
                      for g in found]))


@partners.command("adopt")
@click.argument("sender_key")
@click.option("--new", "new_id", default=None, help="Create this partner for the sender.")
@click.option("--name", default=None, help="The new partner's name (with --new).")
@click.option("--state", type=click.Choice(["live", "test"]), default="live",
              show_default=True, help="The new partner's onboarding state.")
@click.option("--extend", "extend", default=None,
              help="Add the sender's identifiers to this existing partner instead.")
@click.option("--by", "by", default=None, help="Who asks (default: the user running it).")
@click.option("--wait", default=10.0, show_default=True,
              help="Seconds to wait for broker confirms of what the files gave.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_adopt(obj: CliContext, sender_key: str, new_id: str | None, name: str | None,
                   state: str, extend: str | None, by: str | None, wait: float,
                   as_json: bool) -> None:
    """Make the unknown sender SENDER_KEY (see ``partners senders``) a partner, then process
    again every quarantined file it sent.

    --new ID --name NAME creates the partner with the sender's identifiers; --extend ID adds
    them to an existing partner. The profile is judged as check-config judges it before it
    is written. Exit status 1 when refused or when a file failed again."""
    import getpass

    from gateway.cli.ingest import publish_outbox
    from gateway.store.audit import AuditLog
    from gateway.web.adopt import NewPartner, adopt
    from gateway.web.partners_admin import PartnerAdmin, PartnerAdminError

    if (new_id is None) == (extend is None):
        fail("give --new ID --name NAME, or --extend ID", 1)
    if new_id is not None and not name:
        fail("--new needs --name", 1)
    setup_logs(obj.settings, "warning")
    who = by or getpass.getuser()
    gw = open_gateway(obj)
    try:
        admin = PartnerAdmin(obj.settings, audit=AuditLog(gw.store),
                             on_change=gw.partners_changed,
                             secrets_dir=obj.settings.secrets_dir,
                             certs_dir=obj.settings.certs_dir)
        new = NewPartner(id=new_id, name=name or "", state=state) if new_id else None
        try:
            done = adopt(gw, admin, f"cli:{who}", sender_key, new=new, extend=extend)
        except PartnerAdminError as exc:
            fail(str(exc), 1)
        if as_json:
            click.echo(json.dumps(done.as_dict(), indent=2))
        else:
            click.echo(f"sender {done.sender}: partner {done.partner_id} "
                       f"{'created' if done.created else 'extended'} with "
                       f"{', '.join(done.identifiers) or 'its channel'}; "
                       f"{len(done.reprocessed)} file(s) processed again: "
                       + (", ".join(f"{n} {s}" for s, n in sorted(done.outcomes.items()))
                          or "none"))
            for r in done.reprocessed:
                click.echo(f"  {r.transmission_id} -> {r.attempt_id}: {r.status}"
                           + (f" ({r.reason})" if r.reason else ""))
            for tid, why in done.failed:
                click.echo(f"  {tid}: not processed again: {why}", err=True)
        if done.reprocessed:
            import contextlib

            # With --json, stdout is the answer alone: what publishing says goes to stderr.
            with contextlib.redirect_stdout(sys.stderr if as_json else sys.stdout):
                publish_outbox(gw, obj, wait)
    finally:
        gw.close()
    again = [r for r in done.reprocessed if r.status in ("FAILED", "QUARANTINED")]
    sys.exit(1 if again or done.failed else 0)
