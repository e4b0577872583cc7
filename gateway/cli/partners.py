"""``edigw partners``: list, show and add partner profiles (config/partners/*.toml)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from gateway.cli.common import CliContext, fail, table
from gateway.config import (
    DocumentSettings,
    Identifiers,
    Partner,
    UnbIdentifier,
    load_partners,
    partner_toml,
)
from gateway.core.errors import ConfigError


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
    click.echo(table(["id", "name", "unb sender ids", "channels", "documents"],
                     [[p.id, p.name,
                       ", ".join(u.id + (f":{u.qualifier}" if u.qualifier else "")
                                 for u in p.identifiers.unb) or "-",
                       ", ".join(p.channels), ", ".join(d.type for d in p.documents) or "-"]
                      for p in directory]))


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
    for m in mappings:
        doc_type, sep, mapping_id = m.partition("=")
        if not sep:
            raise click.BadParameter(f"{m!r}: expected TYPE=MAPPING_ID", param_hint="--mapping")
        docs.append({"type": doc_type, "format": "edifact", "mapping": mapping_id})
    try:
        documents = [DocumentSettings.model_validate(d) for d in docs]
        partner = Partner.model_validate({
            "id": partner_id, "name": name, "documents": documents,
            "identifiers": Identifiers(unb=[_unb(u) for u in unb], gln=list(gln),
                                       vat=list(vat), email=list(email))})
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']} (value {err.get('input')!r})")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(partner_toml(partner))
    try:
        load_partners(folder)  # the new profile must not clash with the others
    except ConfigError:
        target.unlink()
        raise
    click.echo(f"partner {partner_id} added: {target}")
