"""Strict configuration: bad settings stop start-up naming file, key and value."""

from pathlib import Path

import pytest

from gateway.config import load_partners, load_settings, mask_url
from gateway.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_embedded_defaults_without_a_file(tmp_path, monkeypatch):
    """Without a settings file the embedded defaults give SQLite, var/ folders and localhost."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.store.url.startswith("sqlite:///")
    assert s.inbox[0].path == Path("var/inbox")
    assert s.broker.queues[0].name == "erp.orders"
    assert s.source == "<embedded defaults>"


def test_repository_settings_file_is_valid():
    """The committed config/gateway.toml loads as it is."""
    root = Path(__file__).resolve().parents[2]
    s = load_settings(root / "config" / "gateway.toml", env={})
    assert s.broker.exchange == "edi.documents"
    assert len(load_partners(root / "config" / "partners", env={})) >= 1


def test_unknown_key_names_file_and_key(tmp_path):
    """An unknown key stops loading with the file and the dotted key."""
    f = write(tmp_path / "g.toml", '[store]\nurl = "sqlite:///x.db"\nurll = "oops"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(f, env={})
    assert e.value.file == str(f)
    assert e.value.key == "store.urll"
    assert "unknown key" in str(e.value)


def test_bad_value_names_the_value(tmp_path):
    """A malformed value is named with its key."""
    f = write(tmp_path / "g.toml", '[broker]\nurl = "http://nope"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(f, env={})
    assert e.value.key == "broker.url"
    assert "http://nope" in str(e.value)


def test_bad_value_in_a_list_of_tables(tmp_path):
    """A bad value inside [[inbox]] names the index of the table."""
    f = write(tmp_path / "g.toml", '[[inbox]]\npath = "in"\npoll_interval = -1\n')
    with pytest.raises(ConfigError) as e:
        load_settings(f, env={})
    assert e.value.key == "inbox.0.poll_interval"


def test_environment_references_and_overrides(tmp_path):
    """${VAR} and ${VAR:-default} come from the environment; EDIGW_*_URL override."""
    f = write(tmp_path / "g.toml", '[store]\nurl = "${DB:-sqlite:///d.db}"\n[archive]\npath = "${ARCH}"\n')
    s = load_settings(f, env={"ARCH": "/data/a", "EDIGW_BROKER_URL": "amqp://u:p@h:5672/v"})
    assert s.store.url == "sqlite:///d.db"
    assert s.archive.path == Path("/data/a")
    assert s.broker.url == "amqp://u:p@h:5672/v"


def test_missing_environment_variable_is_an_error(tmp_path):
    """A reference to an unset variable without default names the variable."""
    f = write(tmp_path / "g.toml", '[store]\nurl = "${NOPE}"\n')
    with pytest.raises(ConfigError, match="NOPE is not set"):
        load_settings(f, env={})


def test_invalid_toml_is_reported(tmp_path):
    """A file that is not TOML names the file."""
    f = write(tmp_path / "g.toml", "[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(f, env={})


def test_password_is_masked_in_errors_and_summaries():
    """Broker passwords never appear in messages."""
    assert mask_url("amqp://guest:secret@h:5672/%2F") == "amqp://guest:***@h:5672/%2F"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_partner_profile_checks(tmp_path):
    """Partner files: id equals file name, unknown keys refused, UNB ids unique."""
    (tmp_path / "acme.toml").write_text('id = "acme"\nname = "ACME"\n[identifiers]\nunb = [{id = "123", qualifier = "14"}]\n')
    d = load_partners(tmp_path, env={})
    assert d.by_unb_sender("123", "14").id == "acme"
    assert d.by_unb_sender("123", "ZZ") is None
    (tmp_path / "beta.toml").write_text('id = "beta"\nname = "B"\n[identifiers]\nunb = [{id = "123", qualifier = "14"}]\n')
    with pytest.raises(ConfigError, match="already belongs to partner acme"):
        load_partners(tmp_path, env={}, strict=True)
    (tmp_path / "beta.toml").write_text('id = "gamma"\nname = "B"\n')
    with pytest.raises(ConfigError, match="file name"):
        load_partners(tmp_path, env={}, strict=True)
    (tmp_path / "beta.toml").write_text('id = "beta"\nname = "B"\ncolour = "red"\n')
    with pytest.raises(ConfigError) as e:
        load_partners(tmp_path, env={}, strict=True)
    assert e.value.key == "colour"


def test_partner_without_qualifier_matches_any_qualifier(tmp_path):
    """A profile that gives no qualifier matches the sender id whatever its qualifier."""
    (tmp_path / "acme.toml").write_text('id = "acme"\nname = "ACME"\n[identifiers]\nunb = [{id = "123"}]\n')
    d = load_partners(tmp_path, env={})
    assert d.by_unb_sender("123", "14").id == "acme"
    assert d.by_unb_sender("123", None).id == "acme"


def test_partner_found_by_document_identifiers():
    """XML and CSV documents name their sender by GLN, VAT id, SIREN …: each finds its partner."""
    from gateway.config import Identifiers, Partner, PartnerDirectory

    acme = Partner(id="acme", name="ACME", identifiers=Identifiers(
        gln=["5412345000013"], vat=["FR 12 345678901"], siren=["345678901"],
        email=["EDI@acme.example"]))
    d = PartnerDirectory([acme])
    assert d.by_identifier("gln", "5412345000013") is acme
    assert d.by_identifier("vat", "fr12345678901") is acme
    assert d.by_identifier("siren", "345 678 901") is acme
    assert d.by_identifier("email", "edi@ACME.example".lower()) is acme
    assert d.by_identifier("gln", "4000000000006") is None
    assert d.by_identifier("duns", "123") is None
