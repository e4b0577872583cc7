"""Configuration that fails alone (issue 19, part 6): a broken mapping or partner profile
disables that mapping or partner, with its file and reason, while everything else runs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.config import load_partners
from gateway.core.errors import ConfigError, MappingDefinitionError, MappingError
from gateway.formats.mapping import MappingSet

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "mappings" / "edifact" / "eancom-orders-d96a.sample.edi"

HEAD = """\
id: test-orders
document: order
match: {message: ORDERS, version: D, release: 96A, agency: UN}
groups:
  line: {trigger: LIN, contains: [QTY, PIA]}
fields:
  order_number: {path: "BGM/1004", required: true}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- mappings -------------------------------------------------------------------------------

def test_a_broken_mapping_file_is_left_out_alone(tmp_path: Path) -> None:
    """Bad YAML and a bad field each leave their own mapping out, with file and line; the
    good mapping loads, and asking for a left-out one says why."""
    _write(tmp_path, "good.yaml", HEAD)
    _write(tmp_path, "nope.yaml", "id: nope\ndocument: order\nfields: [\n")
    bad = _write(tmp_path, "bad-field.yaml", HEAD.replace("test-orders", "bad-field")
                 + '  currency: "CUX/9999"\n')
    mappings = MappingSet.load(tmp_path)
    assert set(mappings.mappings) == {"test-orders"}
    problems = {Path(p.file).name: p for p in mappings.problems}
    assert set(problems) == {"nope.yaml", "bad-field.yaml"}
    assert "not valid YAML" in problems["nope.yaml"].reason and problems["nope.yaml"].line == 4
    assert problems["bad-field.yaml"].line == 8
    assert "CUX has no data element 9999" in problems["bad-field.yaml"].reason
    assert mappings.disabled() == {"bad-field": str(problems["bad-field.yaml"])}
    with pytest.raises(MappingError, match=f"mapping 'bad-field' is disabled: {bad}:8: "):
        mappings.get("bad-field")
    with pytest.raises(MappingDefinitionError):
        MappingSet.load(tmp_path, strict=True)


def test_a_second_file_with_a_taken_id_does_not_disable_the_first(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", HEAD)
    _write(tmp_path, "b.yaml", HEAD)
    mappings = MappingSet.load(tmp_path)
    assert "test-orders" in mappings.mappings and mappings.broken == {}
    assert [Path(p.file).name for p in mappings.problems] == ["b.yaml"]
    assert "already used by" in mappings.problems[0].reason


def test_a_csv_overlay_without_format_loads_whatever_the_file_order(tmp_path: Path) -> None:
    """An overlay inherits its base's ``format``, also when the base was compiled first (the
    base's own document was changed by compiling it: the overlay became EDIFACT and failed
    with an error in the shipped base file)."""
    shutil.copy(ROOT / "mappings" / "csv" / "csv-orders-generic.yaml", tmp_path / "base.yaml")
    _write(tmp_path, "zz-acme.yaml", 'id: acme-csv\nextends: csv-orders-generic\ndelimiter: ","\n')
    mappings = MappingSet.load(tmp_path, strict=True)
    assert mappings.get("acme-csv").format == "csv"
    assert mappings.get("csv-orders-generic").format == "csv"


def test_an_error_in_an_inherited_key_names_the_overlay_file(tmp_path: Path) -> None:
    """The overlay made the base's fields wrong (another document type): the error is the
    overlay's, at its ``extends`` line, and says where the inherited key is."""
    base = _write(tmp_path, "base.yaml", HEAD)
    _write(tmp_path, "zz-overlay.yaml", "id: p\nextends: test-orders\ndocument: price-list\n")
    mappings = MappingSet.load(tmp_path)
    assert "test-orders" in mappings.mappings and "p" in mappings.broken
    problem = mappings.broken["p"]
    assert problem.file.endswith("zz-overlay.yaml") and problem.line == 2
    assert "'order_number' is not a field" in problem.reason
    assert f"in {base}:7, inherited through 'extends: test-orders'" in problem.reason


# -- partner profiles -----------------------------------------------------------------------

def test_a_broken_profile_is_left_out_alone(tmp_path: Path) -> None:
    _write(tmp_path, "acme.toml", 'id = "acme"\nname = "ACME"\n')
    _write(tmp_path, "bad.toml", 'id = "bad"\nname = "Bad"\n[identifiers]\ngln = "x"\n')
    _write(tmp_path, "worse.toml", 'id = "worse"\nname = \n')
    directory = load_partners(tmp_path, env={})
    assert [p.id for p in directory] == ["acme"]
    problems = {p.partner_id: p for p in directory.problems}
    assert set(problems) == {"bad", "worse"}
    assert problems["bad"].file.endswith("bad.toml")
    assert problems["bad"].reason.startswith("identifiers.gln: ")
    assert "not valid TOML" in problems["worse"].reason
    assert directory.problem_of(tmp_path / "worse.toml") is problems["worse"]
    with pytest.raises(ConfigError):
        load_partners(tmp_path, env={}, strict=True)


def test_a_profile_taking_anothers_identifier_is_the_one_left_out(tmp_path: Path) -> None:
    unb = '[identifiers]\nunb = [{ id = "123", qualifier = "14" }]\n'
    _write(tmp_path, "acme.toml", 'id = "acme"\nname = "ACME"\n' + unb)
    _write(tmp_path, "beta.toml", 'id = "beta"\nname = "Beta"\n' + unb)
    directory = load_partners(tmp_path, env={})
    assert directory.by_unb_sender("123", "14").id == "acme"
    assert [(p.partner_id, "already belongs to partner acme" in p.reason)
            for p in directory.problems] == [("beta", True)]


# -- the command ------------------------------------------------------------------------------

@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings naming a copy of the shipped mappings with one broken file and a mapping
    that does not check, and partners: a good one, a broken profile, and one naming the
    mapping that does not check."""
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    _write(tmp_path / "mappings", "broken.yaml", "id: broken\ndocument: order\nfields: [\n")
    _write(tmp_path / "mappings", "partners/acme-orders.yaml",
           'id: acme-orders\nextends: eancom-orders-d96a\nfields:\n  currency: "CUX/9999"\n')
    partners = tmp_path / "partners"
    _write(partners, "example-retail.toml", 'id = "example-retail"\nname = "Example"\n'
           '[identifiers]\nunb = [{ id = "5401234000012", qualifier = "14" }]\n')
    _write(partners, "bad.toml", 'id = "bad"\nname = "Bad"\n[identifiers]\ngln = "x"\n')
    _write(partners, "acme.toml", 'id = "acme"\nname = "ACME"\n'
           '[identifiers]\nunb = [{ id = "5409999000017", qualifier = "14" }]\n'
           '[[documents]]\ntype = "order"\nmapping = "acme-orders"\n')
    _write(tmp_path, "gateway.toml",
           'mappings = "mappings"\npartners = "partners"\n'
           '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
           '[archive]\npath = "var/archive"\n'
           '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n')  # nothing listens
    monkeypatch.chdir(tmp_path)
    for var in ("EDIGW_STORE_URL", "EDIGW_BROKER_URL", "EDIGW_BROKER_URLS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["--config", "gateway.toml", *args])


def test_check_config_lists_every_broken_file_and_exits_2(workdir: Path) -> None:
    r = run("check-config")
    assert r.exit_code == 2, r.output
    assert "mappings/broken.yaml: mapping broken disabled: line 4: not valid YAML" in r.output
    assert ("mappings/partners/acme-orders.yaml: mapping acme-orders disabled: line 4: "
            "path 'CUX/9999'") in r.output
    assert "partners/bad.toml: partner bad disabled: identifiers.gln: " in r.output
    assert ("partners/acme.toml: partner acme disabled: its mapping 'acme-orders' did not "
            "load (mappings/partners/acme-orders.yaml:4: ") in r.output
    assert "does not exist" not in r.output
    r = run("check-config", "--json")
    assert r.exit_code == 2
    shown = json.loads(r.stdout)
    assert {(d["kind"], d["name"]) for d in shown["disabled"]} == {
        ("mapping", "broken"), ("mapping", "acme-orders"), ("partner", "bad"),
        ("partner", "acme")}
    assert "eancom-orders-d96a" in shown["mappings"] and shown["partners"] == [
        "acme", "example-retail"]


def test_other_commands_work_and_channels_shows_what_is_disabled(workdir: Path) -> None:
    assert run("log").exit_code == 0
    r = run("channels", "--json")
    assert r.exit_code == 0, r.output
    off = {row["channel"]: row for row in json.loads(r.stdout) if row["state"] == "DISABLED"}
    assert set(off) == {"mapping:broken", "mapping:acme-orders", "partner:bad", "partner:acme"}
    assert off["partner:acme"]["last_error"].startswith("its mapping 'acme-orders' did not load")
    assert off["partner:bad"]["where"].endswith("bad.toml")


def test_a_disabled_partners_file_is_quarantined_and_the_others_processed(workdir: Path
                                                                           ) -> None:
    """A partner naming a broken mapping takes no files: its file is kept, quarantined with
    the mapping's problem, and maps once the mapping is fixed and it is reprocessed."""
    good = SAMPLE.read_bytes()
    (workdir / "good.edi").write_bytes(good)
    (workdir / "acme.edi").write_bytes(good.replace(b"UNB+UNOC:3+5401234000012:14",
                                                    b"UNB+UNOC:3+5409999000017:14"))
    r = run("ingest", "--json", "good.edi", "acme.edi")
    assert r.exit_code == 1, r.output
    out = {t["file"]: t for t in json.loads(r.stdout)["transmissions"]}
    assert out["good.edi"]["status"] == "PROCESSED" and out["good.edi"]["documents"] == 1
    held = out["acme.edi"]
    assert (held["status"], held["partner_id"], held["stage"]) == ("QUARANTINED", "acme",
                                                                    "partner")
    assert held["reason"].startswith("partner disabled: its mapping 'acme-orders' did not "
                                     "load (mappings/partners/acme-orders.yaml:4: ")
    _write(workdir / "mappings", "partners/acme-orders.yaml",
           "id: acme-orders\nextends: eancom-orders-d96a\n")
    r = run("reprocess", "--json", held["transmission_id"], "--reason", "mapping fixed")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)["transmissions"][0]
    assert (again["status"], again["documents"]) == ("PROCESSED", 1)


def test_partners_add_writes_the_format_of_the_mapping(workdir: Path) -> None:
    for pid, mapping, fmt in (("ubl-one", "invoice=ubl-invoice", "xml"),
                              ("csv-one", "order=csv-orders-generic", "csv"),
                              ("edi-one", "order=eancom-orders-d96a", "edifact")):
        r = run("partners", "add", pid, "--name", pid, "--mapping", mapping)
        assert r.exit_code == 0, r.output
        text = (workdir / "partners" / f"{pid}.toml").read_text()
        assert f'format = "{fmt}"' in text, text
    r = run("partners", "add", "two", "--name", "Two", "--mapping", "order=acme-orders")
    assert r.exit_code == 1 and "mapping 'acme-orders' is disabled: " in r.output
    assert not (workdir / "partners" / "two.toml").exists()


def test_the_console_partners_page_shows_what_is_disabled(workdir: Path) -> None:
    """The partners page names the disabled partner beside it, and lists every disabled
    mapping and profile with its file and reason."""
    import html

    import httpx

    from gateway.app import Gateway
    from gateway.config import load_settings
    from gateway.http.server import HttpServer, build_app
    from gateway.web.auth import Users

    gw = Gateway.open(load_settings("gateway.toml", env={}))
    try:
        Users(gw.store).create("vera", "a-long-enough-password", "viewer")
        routes, state = gw.console_routes()
        server = HttpServer(build_app(routes=routes, state=state), port=0).start_in_thread()
        try:
            client = httpx.Client(base_url=server.url)
            assert client.post("/api/login", json={
                "username": "vera", "password": "a-long-enough-password"}).status_code == 200
            page = html.unescape(client.get("/partners").text)
        finally:
            server.stop()
    finally:
        gw.close()
    assert 'id="disabled"' in page
    assert "disabled: its mapping 'acme-orders' did not load" in page
    for shown in ("mappings/broken.yaml", "mappings/partners/acme-orders.yaml",
                  "partners/bad.toml", "identifiers.gln: "):
        assert shown in page, shown


def test_mappings_test_fails_for_a_mapping_that_does_not_load(workdir: Path) -> None:
    r = run("mappings", "test", "--json")
    assert r.exit_code == 1
    failed = {row["mapping"]: row["diff"] for row in map(json.loads, r.stdout.splitlines())
              if row.get("ok") is False}
    assert set(failed) == {"broken", "acme-orders"}
    assert failed["acme-orders"].startswith("does not load: ")


def test_a_broken_outbound_mapping_is_left_out_alone(workdir: Path) -> None:
    """An outbound mapping file that does not load disables that mapping: files are still
    ingested, check-config names it, and rendering with it says why."""
    from gateway.formats.render import OutboundMappings, RenderError

    bad = _write(workdir / "mappings", "outbound/zz-broken.yaml",
                 "id: zz-broken\nsyntax: telex\ndocument: invoice\n")
    outbound = OutboundMappings.load(workdir / "mappings")
    assert "eancom-invoic-d96a" in outbound.mappings and "zz-broken" not in outbound.mappings
    assert [p.file for p in outbound.problems] == [str(bad)]
    with pytest.raises(RenderError, match="outbound mapping 'zz-broken' is disabled: "):
        outbound.choose("invoice", "zz-broken")
    (workdir / "good.edi").write_bytes(SAMPLE.read_bytes())
    r = run("ingest", "--json", "good.edi")
    assert json.loads(r.stdout)["transmissions"][0]["status"] == "PROCESSED", r.output
    r = run("check-config")
    assert r.exit_code == 2
    assert "mappings/outbound/zz-broken.yaml: outbound mapping zz-broken disabled: line 2: 'syntax' " \
        "must be one of" in r.output
