"""``gateway.config_file.basics``, the few settings ``edigw log`` and ``find`` read without
pydantic, gives what the full loader (``gateway.config.load_settings``) gives: same
precedence (environment variables, then the file, then the defaults), same ``${NAME}``
references, same ``$EDIGW_VAR``, same errors for the values it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.config_file import Basics, basics
from gateway.core.errors import ConfigError

FULL = """\
partners = "${PARTNERS_DIR:-elsewhere/partners}"
[store]
url = "sqlite:///var/other.sqlite3"
[archive]
path = "var/kept"
[tracker]
timezone = "America/New_York"
[log]
format = "json"
level = "debug"
[broker]
url = "amqp://guest:guest@localhost:5672/%2F"
"""

CASES: list[tuple[str, str | None, dict[str, str]]] = [
    ("no file, no variable: the defaults", None, {}),
    ("the file's values", FULL, {}),
    ("a reference to the environment", FULL, {"PARTNERS_DIR": "/srv/partners"}),
    ("variables over the file", FULL, {
        "EDIGW_STORE_URL": "postgresql://edigw@db/edigw", "EDIGW_PARTNERS": "p",
        "EDIGW_ARCHIVE_PATH": "/data/archive", "EDIGW_LOG_FORMAT": "console",
        "EDIGW_LOG_LEVEL": "error"}),
    ("an empty variable is not set", FULL, {"EDIGW_STORE_URL": "", "EDIGW_LOG_LEVEL": ""}),
    ("EDIGW_VAR moves var/ (and the SQLite file)", FULL, {"EDIGW_VAR": "/var/lib/edigw"}),
    ("EDIGW_VAR over the defaults", None, {"EDIGW_VAR": "/var/lib/edigw"}),
    ("EDIGW_VAR and a variable's path", "", {"EDIGW_VAR": "/v", "EDIGW_ARCHIVE_PATH": "var/a",
                                             "EDIGW_STORE_URL": "sqlite:///var/s.db"}),
    ("a section without the keys", "[tracker]\nenabled = false\n[log]\n", {}),
]


@pytest.mark.parametrize(("text", "env"), [(text, env) for _, text, env in CASES],
                         ids=[name for name, _, _ in CASES])
@pytest.mark.parametrize("named", ["--config", "EDIGW_CONFIG", "config/gateway.toml"])
def test_basics_are_the_full_loaders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     text: str | None, env: dict[str, str], named: str):
    monkeypatch.chdir(tmp_path)
    path: str | None = None
    if text is not None:
        file = tmp_path / "config" / "gateway.toml"
        file.parent.mkdir()
        file.write_text(text, encoding="utf-8")
        if named == "--config":
            path = str(file)
        elif named == "EDIGW_CONFIG":
            env = {**env, "EDIGW_CONFIG": str(file)}
    expected = Basics.of(load_settings(path, env))

    def not_asked(*args: object) -> None:
        raise AssertionError("basics asked the full loader for plainly valid values")

    monkeypatch.setattr("gateway.config.load_settings", not_asked)
    assert basics(path, env) == expected


@pytest.mark.parametrize(("text", "env"), [
    ('[tracker]\ntimezone = "Mars/Olympus"\n', {}),
    ('[store]\nurl = "mysql://x"\n', {}),
    ("", {"EDIGW_STORE_URL": "mysql://x"}),
    ("", {"EDIGW_LOG_FORMAT": "xml"}),
    ("[archive]\npath = 3\n", {}),
    ('store = "sqlite:///x"\n', {}),
    ('partners = "${NOT_SET}"\n', {}),
    ("not toml = = =\n", {}),
], ids=["timezone", "store url", "store url variable", "log format variable", "archive path",
        "store not a table", "unset reference", "not TOML"])
def test_a_bad_value_it_reads_is_the_full_loaders_error(tmp_path: Path, text: str,
                                                        env: dict[str, str]):
    file = tmp_path / "gateway.toml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as full:
        load_settings(file, env)
    with pytest.raises(ConfigError) as light:
        basics(file, env)
    assert str(light.value) == str(full.value)


def test_the_rest_of_the_file_is_left_to_check_config(tmp_path: Path):
    """An unknown key elsewhere stops the full loader, not a command that reads the store."""
    file = tmp_path / "gateway.toml"
    file.write_text('[store]\nurl = "sqlite:///s.db"\n[broker]\nno_such_key = 1\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key"):
        load_settings(file, {})
    assert basics(file, {}).store_url == "sqlite:///s.db"
