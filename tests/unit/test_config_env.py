"""Environment overrides of the settings: EDIGW_HTTP_*, EDIGW_<SECTION>_<KEY>, EDIGW_<KEY>
and EDIGW_VAR (docs/deploy.md lists them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import HttpSettings, load_settings
from gateway.core.errors import ConfigError
from gateway.shipped import shipped

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_TOML = ROOT / "config" / "gateway.toml"


def test_every_http_key_has_its_variable() -> None:
    env = {"EDIGW_HTTP_HOST": "0.0.0.0", "EDIGW_HTTP_PORT": "9090",
           "EDIGW_HTTP_PUBLIC_URL": "https://edi.example", "EDIGW_HTTP_CONSOLE": "false",
           "EDIGW_HTTP_SECURE_COOKIES": "true", "EDIGW_HTTP_MAX_BODY": "1000",
           "EDIGW_HTTP_MAX_JSON": "2048", "EDIGW_HTTP_HEADER_TIMEOUT": "3.5",
           "EDIGW_HTTP_BODY_TIMEOUT": "4", "EDIGW_HTTP_MIN_BODY_RATE": "0",
           "EDIGW_HTTP_KEEP_ALIVE": "7", "EDIGW_HTTP_MAX_CONNECTIONS": "20",
           "EDIGW_HTTP_ENABLED": "true", "EDIGW_HTTP_PASSWORD_RESET_MINUTES": "45"}
    assert {f"EDIGW_HTTP_{k.upper()}" for k in HttpSettings.model_fields} == set(env)
    h = load_settings(SHIPPED_TOML, env=env).http
    assert (h.host, h.port, h.public_url, h.console, h.secure_cookies) == (
        "0.0.0.0", 9090, "https://edi.example", False, True)
    assert (h.max_body, h.max_json, h.header_timeout, h.body_timeout, h.min_body_rate,
            h.keep_alive, h.max_connections) == (1000, 2048, 3.5, 4.0, 0, 7, 20)
    assert h.password_reset_minutes == 45


def test_the_environment_wins_over_the_file_and_the_defaults(tmp_path: Path) -> None:
    env = {"EDIGW_ARCHIVE_PATH": "/data/archive", "EDIGW_OUTBOUND_PATH": "/data/out",
           "EDIGW_MAPPINGS": "/etc/edigw/mappings", "EDIGW_PARTNERS": "/etc/edigw/partners",
           "EDIGW_SECRETS_DIR": "/run/edigw/secrets", "EDIGW_CERTS_DIR": "/data/certs",
           "EDIGW_INBOX_PATH": "/data/in", "EDIGW_INBOX_PROCESSED": "/data/done",
           "EDIGW_INBOX_FAILED": "/data/bad", "EDIGW_LOG_FORMAT": "json",
           "EDIGW_LOG_LEVEL": "warning", "EDIGW_ARCHIVE_FSYNC": "false"}
    for source in (SHIPPED_TOML, None):
        s = load_settings(source, env=env)
        assert s.archive.path == Path("/data/archive") and s.archive.fsync is False
        assert s.outbound.path == Path("/data/out")
        assert s.mappings == Path("/etc/edigw/mappings")
        assert s.partners == Path("/etc/edigw/partners")
        assert (s.secrets_dir, s.certs_dir) == (Path("/run/edigw/secrets"), Path("/data/certs"))
        [inbox] = s.inbox
        assert (inbox.path, inbox.processed_dir, inbox.failed_dir) == (
            Path("/data/in"), Path("/data/done"), Path("/data/bad"))
        assert (s.log.format, s.log.level) == ("json", "warning")


def test_an_empty_variable_is_not_set() -> None:
    s = load_settings(SHIPPED_TOML, env={"EDIGW_HTTP_PORT": "", "EDIGW_ARCHIVE_PATH": ""})
    assert s.http.port == 8080 and s.archive.path == Path("var/archive")


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(SHIPPED_TOML, env={"EDIGW_HTTP_PORT": "eighty"})
    assert "EDIGW_HTTP_PORT" in str(err.value) and err.value.key == "http.port"
    with pytest.raises(ConfigError, match="EDIGW_LOG_LEVEL"):
        load_settings(None, env={"EDIGW_LOG_LEVEL": "loud"})


def test_inbox_variables_need_exactly_one_inbox(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text('[[inbox]]\npath = "a"\n[[inbox]]\npath = "b"\n')
    assert len(load_settings(f, env={}).inbox) == 2
    with pytest.raises(ConfigError, match="EDIGW_INBOX_PATH sets the one"):
        load_settings(f, env={"EDIGW_INBOX_PATH": "/x"})


def test_edigw_var_moves_every_var_path(tmp_path: Path) -> None:
    f = tmp_path / "g.toml"
    f.write_text('[[inbox]]\npath = "var/a/in"\n[[inbox]]\npath = "/abs/in"\n'
                 'processed = "var/done"\n[archive]\npath = "/elsewhere/archive"\n')
    s = load_settings(f, env={"EDIGW_VAR": "/var/lib/edigw"})
    base = Path("/var/lib/edigw")
    assert s.store.url == "sqlite:////var/lib/edigw/edigw.sqlite3"
    assert s.archive.path == Path("/elsewhere/archive")  # absolute: left alone
    assert s.outbound.path == base / "outbound"
    assert (s.secrets_dir, s.certs_dir) == (base / "secrets", base / "certs")
    assert s.inbox[0].path == base / "a" / "in"
    assert s.inbox[0].processed_dir == base / "a" / "processed"
    assert (s.inbox[1].path, s.inbox[1].processed_dir) == (Path("/abs/in"), base / "done")
    # the defaults, and the shipped file (its store URL a ${...} reference)
    for source in (None, SHIPPED_TOML):
        s = load_settings(source, env={"EDIGW_VAR": "/data"})
        assert s.store.url == "sqlite:////data/edigw.sqlite3"
        assert s.archive.path == Path("/data/archive")
        assert [i.path for i in s.inbox] == [Path("/data/inbox")]
        assert s.inbox[0].processed_dir == Path("/data/processed")
        assert s.mappings == Path("mappings") and s.partners == Path("config/partners")


def test_edigw_var_leaves_other_stores_alone() -> None:
    for url in ("postgresql://u@db:5432/edigw", "sqlite:////abs/edigw.sqlite3",
                "sqlite:///other/edigw.sqlite3"):
        s = load_settings(None, env={"EDIGW_VAR": "/data", "EDIGW_STORE_URL": url})
        assert s.store.url == url


def test_the_shipped_mappings_when_the_folder_has_none(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert s.mappings == shipped("mappings") and (s.mappings / "edifact").is_dir()
    assert load_settings(SHIPPED_TOML, env={}).mappings == shipped("mappings")
    f = tmp_path / "g.toml"
    f.write_text('mappings = "elsewhere"\n')
    assert load_settings(f, env={}).mappings == Path("elsewhere")  # named: taken as written
    (tmp_path / "mappings").mkdir()
    assert load_settings(None, env={}).mappings == Path("mappings")
    assert load_settings(None, env={"EDIGW_MAPPINGS": "/m"}).mappings == Path("/m")
