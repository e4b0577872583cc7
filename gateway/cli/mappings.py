"""``edigw mappings test`` and ``edigw schemas write``: the declarative mappings against
their samples, and the canonical JSON Schemas regenerated from the models."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gateway.cli.common import CliContext, emit_json, json_option


@click.group()
def mappings() -> None:
    """Declarative mappings (mappings/)."""


@mappings.command("test")
@click.option("--update", is_flag=True,
              help="Rewrite the expected outputs (inbound and outbound) from the current output.")
@json_option("JSON lines on stdout: one per sample (mapping, sample, ok, diff), then the "
             "totals.")
@click.pass_obj
def mappings_test(obj: CliContext, update: bool, as_json: bool) -> None:
    """Run every mapping on its sample and compare with the expected output: inbound
    mappings give canonical JSON, outbound mappings (mappings/outbound/) the rendered file."""
    from gateway.formats.mapping import run_samples, write_expected
    from gateway.formats.render.samples import run_outbound_samples, write_outbound_expected

    root = Path(obj.settings.mappings)
    if update:
        written = [*write_expected(root), *write_outbound_expected(root)]
        if as_json:
            emit_json([dict(wrote=str(path)) for path in written], lines=True)
            return
        for path in written:
            click.echo(f"wrote {path}")
        return
    results = [*run_samples(root), *run_outbound_samples(root)]
    bad = sum(1 for r in results if not r.ok)
    if as_json:
        emit_json([dict(mapping=r.mapping_id, sample=str(r.sample), ok=r.ok,
                        diff=None if r.ok else r.diff) for r in results]
                  + [dict(passed=len(results) - bad, failed=bad)], lines=True)
        sys.exit(1 if bad or not results else 0)
    for r in results:
        click.echo(f"{'ok  ' if r.ok else 'FAIL'}  {r.mapping_id}  {r.sample}")
        if not r.ok:
            click.echo(r.diff)
    click.echo(f"{len(results) - bad} passed, {bad} failed")
    sys.exit(1 if bad or not results else 0)


@click.group()
def schemas() -> None:
    """Canonical JSON Schemas (schemas/canonical/)."""


@schemas.command("write")
@click.option("--dir", "folder", default="schemas/canonical", show_default=True)
@json_option("JSON lines on stdout: one per file written.")
def schemas_write(folder: str, as_json: bool) -> None:
    """Regenerate the JSON Schemas from the canonical models."""
    from gateway.core.canonical import CANONICAL_MODELS, json_schema_text

    Path(folder).mkdir(parents=True, exist_ok=True)
    for name in CANONICAL_MODELS:
        path = Path(folder) / f"{name}.schema.json"
        path.write_text(json_schema_text(name))
        if as_json:
            emit_json([dict(wrote=str(path), schema=name)], lines=True)
        else:
            click.echo(f"wrote {path}")
