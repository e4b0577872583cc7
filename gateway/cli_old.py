"""The ``edigw`` command."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from gateway.config import (
    DocumentSettings,
    GatewaySettings,
    Identifiers,
    Partner,
    UnbIdentifier,
    load_partners,
    load_settings,
    mask_url,
    partner_toml,
)
from gateway.core.errors import ConfigError, EdigwError, MappingDefinitionError


class _Ctx:
    def __init__(self, config: str | None) -> None:
        self.config_path = config
        self._settings: GatewaySettings | None = None

    @property
    def settings(self) -> GatewaySettings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"edigw: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns edigw's own errors into one clear line and exit status 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, MappingDefinitionError) as exc:
            _fail(str(exc))
        except EdigwError as exc:
            _fail(str(exc), 1)


@click.group(cls=_Group)
@click.option("--config", "-c", envvar="EDIGW_CONFIG", type=click.Path(dir_okay=False),
              help="Settings file (default: config/gateway.toml when present, else embedded defaults).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """edigw: EDI gateway. Partners' files in, canonical documents on RabbitMQ out."""
    ctx.obj = _Ctx(config)


def _setup_logs(settings: GatewaySettings, level: str | None = None) -> None:
    from gateway.logs import configure

    configure(settings.log.format, level or settings.log.level)


def _open(ctx: _Ctx) -> Any:
    from gateway.app import Gateway

    return Gateway.open(ctx.settings)


# -- serve / ingest -------------------------------------------------------------------------

@main.command()
@click.pass_obj
def serve(obj: _Ctx) -> None:
    """Watch the inbox folders, process what arrives and publish to RabbitMQ."""
    from gateway.store.lock import InstanceLock

    _setup_logs(obj.settings)
    # One gateway per SQLite store: a second one would process every file twice.
    lock = InstanceLock.for_store(obj.settings.store.url)
    if lock is not None:
        lock.acquire()  # InstanceLocked names the first gateway; exit status 1
    gw = _open(obj)
    for inbox in obj.settings.inbox:
        inbox.path.mkdir(parents=True, exist_ok=True)
    click.echo(f"edigw serving; drop files into: {', '.join(str(i.path) for i in obj.settings.inbox)}",
               err=True)
    problem = gw.broker_problem()
    if problem:
        click.echo(f"edigw: {problem}\n"
                   "       documents are kept in the outbox and published once it is reachable "
                   "(set EDIGW_BROKER_URL or [broker] url).", err=True)
    try:
        asyncio.run(gw.serve())
    finally:
        if lock is not None:
            lock.release()


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--partner", help="Partner id, when the file does not say who sent it.")
@click.option("--no-publish", is_flag=True, help="Only store; leave documents in the outbox.")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for broker confirms.")
@click.pass_obj
def ingest(obj: _Ctx, files: tuple[str, ...], partner: str | None, no_publish: bool,
           wait: float) -> None:
    """Receive FILES as if dropped into the inbox, process them, publish the documents."""
    from gateway.core.ports import Incoming

    _setup_logs(obj.settings, "warning")
    gw = _open(obj)
    if partner and gw.partners.get(partner) is None:
        _fail(f"unknown partner {partner!r} (see 'edigw partners list')")
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
            failed += _report(gw.pipeline.process(receipt.transmission_id), f"  {path.name}")
        if not no_publish:
            _publish_outbox(gw, obj, wait)
    finally:
        gw.close()
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("transmission_ids", nargs=-1, required=True)
@click.option("--reason", required=True,
              help="Why (the mapping or profile fix); kept on both timelines.")
@click.option("--by", "by", default=None,
              help="Who asks (default: the user running the command).")
@click.option("--wait", default=10.0, show_default=True, help="Seconds to wait for broker confirms.")
@click.pass_obj
def reprocess(obj: _Ctx, transmission_ids: tuple[str, ...], reason: str, by: str | None,
              wait: float) -> None:
    """Replay FAILED or QUARANTINED transmissions from the archive, after a fix.

    Each replay is a new attempt linked to the first (``reprocess_of``), recording who asked,
    when and why; the first keeps its outcome. A transmission some of whose messages failed
    is taken too: its failed messages are tried again, and the documents already published
    are recognised and not sent twice. A RECEIVED transmission (left by a crash) is simply
    processed."""
    import dataclasses
    import getpass

    from gateway.core.reprocess import ReprocessError, reprocess
    from gateway.store.audit import AuditLog

    _setup_logs(obj.settings, "warning")
    who = by or getpass.getuser()
    gw = _open(obj)
    failed = 0
    try:
        for tid in transmission_ids:
            try:
                done = reprocess(gw, tid, by=who, reason=reason)
            except ReprocessError as exc:
                click.echo(f"{tid}: {exc}")
                if type(exc) is not ReprocessError:  # unknown, or its payload purged
                    failed += 1
                continue
            AuditLog(gw.store).record(f"cli:{who}", "transmission.reprocess",
                                      f"transmission:{done.transmission_id}",
                                      after={"attempt": done.attempt_id, "reason": reason,
                                             "status": done.status})
            if done.attempt_id != done.transmission_id:
                click.echo(f"{done.transmission_id}: replayed as {done.attempt_id}")
            failed += _report(dataclasses.replace(done, transmission_id=done.attempt_id),
                              "  " if done.attempt_id != done.transmission_id else "")
        _publish_outbox(gw, obj, wait)
    finally:
        gw.close()
    sys.exit(1 if failed else 0)


def _report(out: Any, label: str = "") -> int:
    """Print one processing outcome; 1 when it failed."""
    if out.reason and out.status not in ("PROCESSED", "PUBLISHED", "PARTIAL", "HELD"):
        click.echo(f"{out.transmission_id}{label}: {out.status} at {out.stage}: {out.reason}")
        return 1
    if out.status == "HELD" and not out.reason:
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


def _publish_outbox(gw: Any, obj: _Ctx, wait: float) -> None:
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


# -- log / show / find ----------------------------------------------------------------------

def _parse_when(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD or ISO date-time)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _store(obj: _Ctx) -> Any:
    from gateway.store.db import Store

    return Store.from_url(obj.settings.store.url)


@main.command("log")
@click.option("--partner", help="Only this partner's transmissions.")
@click.option("--status", help="RECEIVED, PROCESSED, PUBLISHED, PARTIAL, HELD, FAILED, "
                               "QUARANTINED or DUPLICATE.")
@click.option("--since", help="From this date or date-time (UTC unless given).")
@click.option("--until", help="Before this date or date-time.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
@click.pass_obj
def log_cmd(obj: _Ctx, partner: str | None, status: str | None, since: str | None,
            until: str | None, limit: int, as_json: bool) -> None:
    """The transmission log, newest first."""
    from gateway.store.db import LogFilter
    from gateway.store.schema import TRANSMISSION_STATUSES

    if status and status.upper() not in TRANSMISSION_STATUSES:
        raise click.BadParameter(f"{status!r}; one of {', '.join(TRANSMISSION_STATUSES)}",
                                 param_hint="--status")
    store = _store(obj)
    rows = store.log(LogFilter(partner=partner, status=status, since=_parse_when(since),
                               until=_parse_when(until), limit=limit))
    from gateway.store.erp import ErpAcks

    erp = ErpAcks(store).erp_summary(r.id for r in rows)
    if as_json:
        click.echo(json.dumps([dict(r.as_dict(), erp=erp.get(r.id)) for r in rows], indent=2,
                              default=str))
        return
    table = [[r.received_at.strftime("%Y-%m-%d %H:%M:%S"), r.id, r.partner_id or "-", r.channel,
              (r.filename or "-")[:40], r.format or "-", str(r.document_count),
              _status_label(r), _erp_label(erp.get(r.id))] for r in rows]
    click.echo(_table(["time (UTC)", "id", "partner", "channel", "file", "format", "docs",
                       "status", "erp"], table))


def _erp_label(counts: dict[str, int] | None) -> str:
    """What the ERP said of a transmission's published documents: "accepted", "2 rejected,
    1 waiting" …; "-" when nothing of it was published."""
    if not counts:
        return "-"
    said = [(n, k) for k, n in counts.items() if n]
    if len(said) == 1:
        return said[0][1]
    return ", ".join(f"{n} {k}" for n, k in said)


def _status_label(row: Any) -> str:
    if row.stage:
        return f"{row.status} ({row.stage})"
    if row.status == "PROCESSED":
        return "PROCESSED (in outbox)"  # documents stored, not yet confirmed by the broker
    return row.status


@main.command()
@click.argument("transmission_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--payloads", is_flag=True, help="Include the canonical documents.")
@click.pass_obj
def show(obj: _Ctx, transmission_id: str, as_json: bool, payloads: bool) -> None:
    """One transmission: its timeline and its documents."""
    from gateway.store.transport import transport_of

    store = _store(obj)
    t = store.get_transmission(transmission_id)
    if t is None:
        _fail(f"no transmission {transmission_id}", 1)
    events = store.events(t.id)
    docs = store.documents_of(t.id)
    if as_json:
        out = t.as_dict()
        out["events"] = [dict(e, at=e["at"].isoformat()) for e in events]
        out["documents"] = [d.as_dict() for d in docs]
        out["interchanges"] = store.interchanges_of(t.id)
        out["outbound"] = [o.as_dict() for o in store.outbound_of(t.id)]
        out.update(transport_of(store, t.id))
        if payloads:
            for d, row in zip(out["documents"], docs, strict=True):
                d["payload"] = store.document_payload(row.id)
        click.echo(json.dumps(out, indent=2, default=str))
        return
    click.echo(f"transmission {t.id}  {t.status}" + (f" at {t.stage}" if t.stage else ""))
    for label, value in (("partner", t.partner_id), ("channel", t.channel), ("file", t.filename),
                         ("from", t.channel_ref), ("size", f"{t.size} bytes"), ("sha256", t.sha256),
                         ("format", " ".join(x for x in (t.format, t.standard) if x)),
                         ("received", t.received_at.isoformat()), ("reason", t.reason),
                         ("duplicate of", t.duplicate_of), ("attempt at", t.reprocess_of),
                         ("asked by", t.requested_by and f"{t.requested_by}: {t.request_reason}"),
                         ("purged", t.purged_at.isoformat() if t.purged_at else None)):
        if value:
            click.echo(f"  {label:<13}{value}")
    click.echo("\ntimeline")
    for e in events:
        click.echo(f"  {e['at'].strftime('%H:%M:%S.%f')[:-3]}  {e['event']:<20} {e['detail'] or ''}")
    click.echo(f"\ndocuments ({len(docs)})")
    if docs:
        click.echo(_table(["id", "type", "number", "interchange", "message", "status", "erp",
                           "message_id"],
                          [[d.id, d.doc_type, d.business_number or "-", d.interchange_ref or "-",
                            d.message_ref or "-", d.status, d.erp_status or "-", d.message_id]
                           for d in docs]))
        for d in docs:
            if d.conflict_of:
                click.echo(f"  {d.id} {d.status}: the number of document {d.conflict_of} with "
                           f"other content (edigw conflicts show {d.id})")
            if d.reason:
                click.echo(f"  {d.id} {d.status}: {d.reason}")
            if d.erp_status:
                when = f" at {d.erp_at:%Y-%m-%d %H:%M} UTC" if d.erp_at else ""
                click.echo(f"  {d.id} ERP {d.erp_status}{when}"
                           + (f": {d.erp_reason}" if d.erp_reason else ""))
        if payloads:
            for d in docs:
                click.echo(json.dumps(store.document_payload(d.id), indent=2))
    interchanges = store.interchanges_of(t.id)
    if interchanges:
        click.echo(f"\ninterchanges ({len(interchanges)})")
        click.echo(_table(["reference", "sender", "recipient", "prepared", "messages", "status"],
                          [[i["control_ref"], i["sender_id"] or "-", i["recipient_id"] or "-",
                            i["prepared"] or "-", str(i["message_count"]), i["status"]]
                           for i in interchanges]))
        for i in interchanges:
            if i["reason"]:
                click.echo(f"  {i['control_ref']}: {i['reason']}")
    transport = transport_of(store, t.id)
    if "as2" in transport:
        a = transport["as2"]
        security = ", ".join(n for n in ("signed", "encrypted", "compressed") if a[n]) or "plain"
        mdn = a["mdn_mode"] + ("" if a["mdn_mode"] == "none" else
                               f", {'signed' if a['mdn_signed'] else 'unsigned'}, {a['mdn_state']}"
                               f" after {a['mdn_attempts']} attempt(s)" if a["mdn_mode"] == "async"
                               else f", {'signed' if a['mdn_signed'] else 'unsigned'}")
        click.echo("\nAS2")
        for label, value in (("Message-ID", a["message_id"]),
                             ("from / to", f"{a['as2_from']} -> {a['as2_to']}"),
                             ("security", security + (f" ({a['algorithms']})"
                                                      if a["algorithms"] else "")),
                             ("MIC", a["mic"]), ("disposition", a["disposition"]),
                             ("MDN", mdn), ("MDN to", a["mdn_url"]),
                             ("MDN sent", a["mdn_sent_at"]), ("MDN error", a["mdn_last_error"])):
            if value:
                click.echo(f"  {label:<13}{value}")
    if "sms" in transport:
        w = transport["sms"]
        click.echo("\nSMS")
        for label, value in (("provider", f"{w['provider']} {w['provider_message_id']}"),
                             ("from", w["sender"]), ("replied", w["reply"])):
            if value:
                click.echo(f"  {label:<13}{value}")
    sent = store.outbound_of(t.id)
    if sent:
        click.echo(f"\nsent to the partner ({len(sent)})")
        click.echo(_table(["kind", "file", "status", "attempts", "detail"],
                          [[o.kind, o.filename, o.status, str(o.attempts),
                            o.last_error or o.detail or "-"] for o in sent]))


@main.command()
@click.argument("number")
@click.option("--partner")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def find(obj: _Ctx, number: str, partner: str | None, as_json: bool) -> None:
    """Where is order NUMBER? Every document with that business number, and its transmission."""
    store = _store(obj)
    docs = store.find_documents(business_number=number, partner=partner)
    if as_json:
        click.echo(json.dumps([d.as_dict() for d in docs], indent=2))
        return
    if not docs:
        _fail(f"no document numbered {number!r}" + (f" from {partner}" if partner else ""), 1)
    click.echo(_table(["created (UTC)", "partner", "type", "number", "status", "transmission"],
                      [[d.created_at.strftime("%Y-%m-%d %H:%M:%S"), d.partner_id, d.doc_type,
                        d.business_number or "-", d.status, d.transmission_id] for d in docs]))


# -- partners -------------------------------------------------------------------------------

@main.group()
def partners() -> None:
    """Partner profiles (config/partners/*.toml)."""


@partners.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_list(obj: _Ctx, as_json: bool) -> None:
    """Every partner profile."""
    directory = load_partners(obj.settings.partners)
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") for p in directory], indent=2))
        return
    click.echo(_table(["id", "name", "unb sender ids", "channels", "documents"],
                      [[p.id, p.name,
                        ", ".join(u.id + (f":{u.qualifier}" if u.qualifier else "")
                                  for u in p.identifiers.unb) or "-",
                        ", ".join(p.channels), ", ".join(d.type for d in p.documents) or "-"]
                       for p in directory]))


@partners.command("show")
@click.argument("partner_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def partners_show(obj: _Ctx, partner_id: str, as_json: bool) -> None:
    """One partner profile."""
    p = load_partners(obj.settings.partners).get(partner_id)
    if p is None:
        _fail(f"no partner {partner_id!r}", 1)
    if as_json:
        click.echo(json.dumps(p.model_dump(mode="json"), indent=2))
    else:
        click.echo(f"# {p.source}\n{partner_toml(p)}", nl=False)


def _unb(value: str) -> UnbIdentifier:
    ident, _, qual = value.partition(":")
    return UnbIdentifier(id=ident, qualifier=qual or None)


@partners.command("add")
@click.argument("partner_id")
@click.option("--name", required=True)
@click.option("--unb", "unb", multiple=True, help="UNB sender id, optionally ID:QUALIFIER (e.g. 5412345000013:14).")
@click.option("--gln", multiple=True)
@click.option("--vat", multiple=True)
@click.option("--email", multiple=True)
@click.option("--mapping", "mappings", multiple=True, help="TYPE=MAPPING_ID, e.g. order=eancom-orders-d96a.")
@click.pass_obj
def partners_add(obj: _Ctx, partner_id: str, name: str, unb: tuple[str, ...], gln: tuple[str, ...],
                 vat: tuple[str, ...], email: tuple[str, ...], mappings: tuple[str, ...]) -> None:
    """Add a partner profile (written to config/partners/PARTNER_ID.toml)."""
    folder = Path(obj.settings.partners)
    target = folder / f"{partner_id}.toml"
    if target.exists():
        _fail(f"partner {partner_id!r} exists already ({target})", 1)
    docs = []
    for m in mappings:
        doc_type, sep, mapping_id = m.partition("=")
        if not sep:
            raise click.BadParameter(f"{m!r}: expected TYPE=MAPPING_ID", param_hint="--mapping")
        docs.append({"type": doc_type, "format": "edifact", "mapping": mapping_id})
    from pydantic import ValidationError

    try:
        partner = Partner(id=partner_id, name=name, documents=[DocumentSettings(**d) for d in docs],
                          identifiers=Identifiers(unb=[_unb(u) for u in unb], gln=list(gln),
                                                  vat=list(vat), email=list(email)))
    except ValidationError as exc:
        err = exc.errors()[0]
        _fail(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']} (value {err.get('input')!r})")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(partner_toml(partner))
    try:
        load_partners(folder)  # the new profile must not clash with the others
    except ConfigError:
        target.unlink()
        raise
    click.echo(f"partner {partner_id} added: {target}")


# -- configuration, mappings, schemas, store ---------------------------------------------------

def _as2_problems(p: Any, s: Any) -> list[str]:
    """A partner's AS2 profile: its certificates readable, our identity there to answer."""
    if p.as2 is None:
        return []
    from gateway.channels.as2.keys import load_ca_certificates, load_partner_certificates
    from gateway.core.errors import ConfigError as _ConfigError

    problems = []
    if s.as2 is None:
        problems.append(f"{p.source}: as2 needs [as2] with our identity in {s.source}")
    elif p.as2.our_as2_id and p.as2.our_as2_id not in {i.as2_id for i in s.as2.identities}:
        problems.append(f"{p.source}: as2.our_as2_id {p.as2.our_as2_id!r} is none of the "
                        f"identities in {s.source}")
    if not p.as2.certificates:
        problems.append(f"{p.source}: as2.certificates: the partner's certificate is needed "
                        "to verify its signatures")
    try:
        load_partner_certificates(p.as2)
        load_ca_certificates(p.as2)
    except _ConfigError as exc:
        problems.append(f"{p.source}: {exc}")
    return problems


def _endpoint_problems(s: Any) -> list[str]:
    """Our AS2 keys load (passphrase right, key matching its certificate); each SMS provider
    has its secret."""
    from gateway.core.errors import ConfigError as _ConfigError

    problems = []
    if s.as2 is not None:
        from gateway.channels.as2.keys import load_identity

        if not s.as2.identities:
            problems.append(f"{s.source}: as2.identities: at least our own AS2 identity")
        for ident in s.as2.identities:
            try:
                load_identity(ident)
            except (_ConfigError, OSError) as exc:
                problems.append(f"{s.source}: as2 identity {ident.as2_id}: {exc}")
    if s.sms is not None:
        if s.sms.twilio is not None and not s.sms.twilio.token_value():
            problems.append(f"{s.source}: sms.twilio needs auth_token or auth_token_file")
        if s.sms.vonage is not None and not s.sms.vonage.secret_value():
            problems.append(f"{s.source}: sms.vonage needs signature_secret or "
                            "signature_secret_file")
    return problems


@main.command("check-config")
@click.pass_obj
def check_config(obj: _Ctx) -> None:
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
        if p.outbound.channel == "sftp" and (p.sftp is None or not p.sftp.outbound_folder):
            problems.append(f"{p.source}: outbound: channel sftp needs [sftp] outbound_folder")
        if p.sftp is not None:
            for label, path in (("key_file", p.sftp.key_file),
                                ("password_file", p.sftp.password_file),
                                ("known_hosts", p.sftp.known_hosts)):
                if path is not None and not path.exists():
                    problems.append(f"{p.source}: sftp.{label}: {path} does not exist")
        if p.email.acknowledgements and s.smtp is None:
            problems.append(f"{p.source}: email.acknowledgements needs [smtp] in {s.source}")
        problems += _as2_problems(p, s)
    problems += _endpoint_problems(s)
    if problems:
        for line in problems:
            click.echo(f"edigw: {line}", err=True)
        sys.exit(2)
    click.echo(f"settings   {s.source}")
    click.echo(f"store      {mask_url(s.store.url)}")
    click.echo(f"broker     {mask_url(s.broker.url)} exchange {s.broker.exchange}, queues "
               + ", ".join(f"{q.name} <- {' '.join(q.bindings)}" for q in s.broker.queues))
    click.echo(f"archive    {s.archive.path}")
    for i in s.inbox:
        click.echo(f"inbox      {i.path} -> {i.processed_dir} | {i.failed_dir}"
                   + (f" (partner {i.partner})" if i.partner else ""))
    for p in directory:
        if p.sftp is not None:
            click.echo(f"sftp       {p.id}: {p.sftp.user}@{p.sftp.host}:{p.sftp.port} "
                       + ", ".join(f"{i.folder} ({i.after})" for i in p.sftp.inbound))
    for m in s.mailboxes:
        click.echo(f"mailbox    {m.name}: {m.user}@{m.host}:{m.port}/{m.folder} -> "
                   f"{m.processed_folder}")
    if s.smtp is not None:
        click.echo(f"smtp       {s.smtp.host}:{s.smtp.port} from {s.smtp.sender}")
    if s.http.enabled:
        click.echo(f"http       {s.http.host}:{s.http.port}"
                   + (f" (public {s.http.public_url})" if s.http.public_url else ""))
    if s.as2 is not None:
        click.echo("as2        POST /as2 as " + ", ".join(i.as2_id for i in s.as2.identities)
                   + "; partners " + (", ".join(f"{p.id} ({p.as2.as2_id})" for p in directory
                                                if p.as2 is not None) or "none"))
    if s.sms is not None:
        providers = [n for n in ("twilio", "vonage") if getattr(s.sms, n) is not None]
        click.echo("sms        " + (", ".join(f"POST /sms/{n}" for n in providers) or "no provider"))
    click.echo(f"mappings   {len(mapping_set)} in {s.mappings}: {', '.join(sorted(mapping_set.mappings))}")
    click.echo(f"partners   {len(directory)} in {s.partners}: {', '.join(p.id for p in directory)}")
    click.echo("configuration OK")


@main.group()
def mappings() -> None:
    """Declarative mappings (mappings/)."""


@mappings.command("test")
@click.option("--update", is_flag=True, help="Rewrite the expected JSON from the current output.")
@click.pass_obj
def mappings_test(obj: _Ctx, update: bool) -> None:
    """Run every mapping on its sample and compare with the expected canonical JSON."""
    from gateway.formats.mapping import run_samples, write_expected

    root = Path(obj.settings.mappings)
    if update:
        for path in write_expected(root):
            click.echo(f"wrote {path}")
        return
    results = run_samples(root)
    bad = 0
    for r in results:
        click.echo(f"{'ok  ' if r.ok else 'FAIL'}  {r.mapping_id}  {r.sample}")
        if not r.ok:
            bad += 1
            click.echo(r.diff)
    click.echo(f"{len(results) - bad} passed, {bad} failed")
    sys.exit(1 if bad or not results else 0)


@main.group()
def schemas() -> None:
    """Canonical JSON Schemas (schemas/canonical/)."""


@schemas.command("write")
@click.option("--dir", "folder", default="schemas/canonical", show_default=True)
def schemas_write(folder: str) -> None:
    """Regenerate the JSON Schemas from the canonical models."""
    from gateway.core.canonical import CANONICAL_MODELS, json_schema_text

    Path(folder).mkdir(parents=True, exist_ok=True)
    for name in CANONICAL_MODELS:
        path = Path(folder) / f"{name}.schema.json"
        path.write_text(json_schema_text(name))
        click.echo(f"wrote {path}")


@main.group()
def db() -> None:
    """The store."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: _Ctx) -> None:
    """Apply the store's migrations."""
    from gateway.store.migrate import current

    store = _store(obj)
    click.echo(f"store at revision {current(store.engine)}: {mask_url(obj.settings.store.url)}")


@main.command()
@click.pass_obj
def declare(obj: _Ctx) -> None:
    """Declare the exchanges and queues on the broker (also done by serve at each connection)."""
    from gateway.app import bus_settings
    from gateway.bus import declare_topology

    settings = bus_settings(obj.settings)
    declare_topology(settings)
    click.echo(f"declared exchange {settings.exchange} and queues "
               + ", ".join(name for name, _ in settings.queues) + f" on {settings.safe_url}")
    t = obj.settings.tracker
    if t.enabled:
        import pika

        from gateway.bus.acks import declare_acks
        from gateway.bus.connect import parameters
        from gateway.bus.events import declare_events

        connection = pika.BlockingConnection(parameters(settings.url))
        try:
            channel = connection.channel()
            declare_acks(channel, t)
            declare_events(channel, t.events_exchange)
        finally:
            connection.close()
        click.echo(f"declared exchange {t.acks_exchange} with queue {t.acks_queue}, and "
                   f"exchange {t.events_exchange}")


@main.command()
@click.pass_obj
def status(obj: _Ctx) -> None:
    """Counts by status, and the outbox."""
    store = _store(obj)
    for k, v in sorted(store.counts_by_status().items()):
        click.echo(f"{k:<12}{v}")
    click.echo(f"{'outbox':<12}{store.outbox_size()} document(s) not yet confirmed by the broker")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def channels(obj: _Ctx, as_json: bool) -> None:
    """Every channel configured, with its health: last success, consecutive failures, last
    error (recorded by the running gateway)."""
    from gateway.config import load_partners
    from gateway.store.channels import ChannelRecords

    store = _store(obj)
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
    rows = []
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
    click.echo(_table(["channel", "partner", "where", "state", "last success", "last error"],
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


@main.group(invoke_without_command=True)
@click.option("--status", "status", type=click.Choice(["open", "acknowledged", "resolved", "all"]),
              default=None, help="Default: open and acknowledged.")
@click.option("--partner", default=None)
@click.option("--kind", default=None)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def alerts(ctx: click.Context, status: str | None, partner: str | None, kind: str | None,
           limit: int, as_json: bool) -> None:
    """The tracker's alerts (open and acknowledged unless --status says otherwise); see also
    'alerts ack', 'alerts resolve' and 'alerts check'."""
    if ctx.invoked_subcommand is not None:
        return
    from gateway.tracker.alerts import AlertBook

    wanted = (None if status == "all" else [status] if status
              else ["open", "acknowledged"])
    found = AlertBook(_store(ctx.obj)).list(wanted, partner=partner, kind=kind, limit=limit)
    if as_json:
        click.echo(json.dumps([a.as_dict() for a in found], indent=2, default=str))
        return
    if not found:
        click.echo("no alerts")
        return
    click.echo(_table(["id", "status", "kind", "partner", "opened (UTC)", "seen", "summary"],
                      [[str(a.id), a.status, a.kind, a.partner_id or "-",
                        a.opened_at.strftime("%Y-%m-%d %H:%M"), str(a.occurrences),
                        a.summary[:90]] for a in found]))


def _alert_action(obj: _Ctx, action: str, alert_id: int, note: str | None,
                  by: str | None) -> None:
    import getpass

    from gateway.tracker.alerts import AlertBook, AlertError

    book = AlertBook(_store(obj))
    try:
        alert = getattr(book, action)(alert_id, by or getpass.getuser(), note)
    except AlertError as exc:
        _fail(str(exc), 1)
    click.echo(f"alert {alert.id} {alert.status}: {alert.summary}")


@alerts.command("ack")
@click.argument("alert_id", type=int)
@click.option("--note", default=None, help="What is being done about it.")
@click.option("--by", default=None, help="Who (default: the user running the command).")
@click.pass_obj
def alerts_ack(obj: _Ctx, alert_id: int, note: str | None, by: str | None) -> None:
    """Acknowledge an open alert: someone is on it (it is not announced again)."""
    _alert_action(obj, "acknowledge", alert_id, note, by)


@alerts.command("resolve")
@click.argument("alert_id", type=int)
@click.option("--note", default=None)
@click.option("--by", default=None, help="Who (default: the user running the command).")
@click.pass_obj
def alerts_resolve(obj: _Ctx, alert_id: int, note: str | None, by: str | None) -> None:
    """Resolve an alert by hand (the tracker resolves by itself what clears up)."""
    _alert_action(obj, "resolve", alert_id, note, by)


@alerts.command("check")
@click.pass_obj
def alerts_check(obj: _Ctx) -> None:
    """Run the tracker's rules once now (what 'edigw serve' does every [tracker] every s)
    and print what opened and what resolved."""
    from gateway.config import load_partners
    from gateway.tracker.engine import Tracker

    store = _store(obj)
    as2 = obj.settings.as2
    result = Tracker(obj.settings.tracker, load_partners(obj.settings.partners), store,
                     certificate_warning_days=as2.certificate_warning_days if as2 else 30,
                     stalled_after=obj.settings.processing.stalled_after).check()
    for label, items in (("opened", result.opened), ("resolved", result.resolved)):
        for a in items:
            click.echo(f"{label:<9}#{a.id} {a.kind} {a.partner_id or '-'}: {a.summary}")
    click.echo(f"{len(result.opened)} opened, {len(result.refreshed)} still open, "
               f"{len(result.resolved)} resolved")


@main.command()
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def security(obj: _Ctx, limit: int, as_json: bool) -> None:
    """Refused requests: forged webhook signatures, AS2 messages that did not verify, unknown
    AS2 senders (newest first)."""
    from gateway.store.security import SecurityLog

    events = SecurityLog(_store(obj)).recent(limit)
    if as_json:
        click.echo(json.dumps([dict(id=e.id, at=e.at.isoformat(), channel=e.channel,
                                    kind=e.kind, remote=e.remote, partner=e.partner_id,
                                    detail=e.detail) for e in events], indent=2))
        return
    if not events:
        click.echo("no security events")
        return
    click.echo(_table(["at", "channel", "kind", "remote", "partner", "detail"],
                      [[e.at.isoformat()[:19], e.channel, e.kind, e.remote or "-",
                        e.partner_id or "-", (e.detail or "-")[:80]] for e in events]))


def _register_tracker_commands() -> None:
    from gateway.cli_tracker import explain as explain_cmd
    from gateway.cli_tracker import purge as purge_cmd

    main.add_command(explain_cmd)
    main.add_command(purge_cmd)
    from gateway.cli_web import tokens as tokens_cmd
    from gateway.cli_web import users as users_cmd

    main.add_command(users_cmd)
    main.add_command(tokens_cmd)
    from gateway.cli_conflicts import conflicts as conflicts_cmd

    main.add_command(conflicts_cmd)


_register_tracker_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
