"""``edigw check-config``: validate settings, partner profiles and mappings together, and
print a summary of what is configured or every problem found."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway.cli.common import CliContext
from gateway.config import GatewaySettings, Partner, load_partners, mask_url
from gateway.core.errors import ConfigError


@click.command("check-config")
@click.pass_obj
def check_config(obj: CliContext) -> None:
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
        problems += _partner_problems(p, s)
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


def _partner_problems(p: Partner, s: GatewaySettings) -> list[str]:
    """A partner's outbound SFTP folder, SFTP files and e-mailed acknowledgements."""
    problems = []
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
    return problems


def _as2_problems(p: Partner, s: GatewaySettings) -> list[str]:
    """A partner's AS2 profile: its certificates readable, our identity there to answer."""
    if p.as2 is None:
        return []
    from gateway.channels.as2.keys import load_ca_certificates, load_partner_certificates

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
    except ConfigError as exc:
        problems.append(f"{p.source}: {exc}")
    return problems


def _endpoint_problems(s: GatewaySettings) -> list[str]:
    """Our AS2 keys load (passphrase right, key matching its certificate); each SMS provider
    has its secret."""
    problems = []
    if s.as2 is not None:
        from gateway.channels.as2.keys import load_identity

        if not s.as2.identities:
            problems.append(f"{s.source}: as2.identities: at least our own AS2 identity")
        for ident in s.as2.identities:
            try:
                load_identity(ident)
            except (ConfigError, OSError) as exc:
                problems.append(f"{s.source}: as2 identity {ident.as2_id}: {exc}")
    if s.sms is not None:
        if s.sms.twilio is not None and not s.sms.twilio.token_value():
            problems.append(f"{s.source}: sms.twilio needs auth_token or auth_token_file")
        if s.sms.vonage is not None and not s.sms.vonage.secret_value():
            problems.append(f"{s.source}: sms.vonage needs signature_secret or "
                            "signature_secret_file")
    return problems
