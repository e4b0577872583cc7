"""``edigw`` starts light: importing the command group loads none of the heavy libraries, and
``edigw --help`` still lists every command with its one-line help (each command's module is
loaded only when that command is asked for)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from gateway.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("sqlalchemy", "fastapi", "starlette", "lxml", "pydantic", "structlog", "alembic",
         "pika", "gateway.config", "gateway.store")


def test_importing_the_cli_loads_no_heavy_library():
    """``python -X importtime -c "import gateway.cli"`` names none of the heavy modules."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import gateway.cli"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
              if line.startswith("import time:")}
    assert "gateway.cli" in loaded and "click" in loaded
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == [], f"importing gateway.cli loads {heavy}"


def test_help_lists_every_command_with_its_one_line_help():
    """Every command of the table is in ``--help``, with the first line of its own help."""
    out = CliRunner().invoke(main, ["--help"])
    assert out.exit_code == 0, out.output
    listed = out.output.split("Commands:", 1)[1]
    for name in COMMANDS:
        command = main.get_command(click.Context(main), name)
        assert isinstance(command, click.Command) and command.name == name
        line = next(x for x in listed.splitlines() if x.split() and x.split()[0] == name)
        assert command.get_short_help_str(limit=20)[:15].rstrip(".") in " ".join(line.split())


def test_one_command_loads_only_its_module():
    """``edigw log --help`` imports the log's module and not, say, the web console's."""
    code = ("import sys; from click.testing import CliRunner; from gateway.cli import main; "
            "r = CliRunner().invoke(main, ['log', '--help']); assert r.exit_code == 0, r.output; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('gateway.cli.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout.split() == ["gateway.cli.common", "gateway.cli.transmissions"]


def test_an_unknown_command_is_refused_by_name():
    out = CliRunner().invoke(main, ["no-such-command"])
    assert out.exit_code == 2 and "No such command 'no-such-command'" in out.output


def test_the_tables_one_line_help_is_each_commands_own():
    """``COMMANDS`` keeps each command's one-line help so ``--help`` imports no command: it
    must be the command's own short help, and the listing the one click makes of the loaded
    commands, at any width."""
    from gateway.cli import LazyGroup

    for name, (_, _, line) in COMMANDS.items():
        command = main.get_command(click.Context(main), name)
        assert command is not None
        assert line == command.get_short_help_str(limit=10**6), (
            f"COMMANDS[{name!r}] differs from the command's own help: "
            f"{command.get_short_help_str(limit=10**6)!r}")
    for width in (50, 80, 120, 300):
        ctx = click.Context(main, terminal_width=width)
        loaded, lazy = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
        click.Group.format_commands(main, ctx, loaded)  # every command loaded (above)
        LazyGroup(name="edigw").format_commands(ctx, lazy)  # none loaded: the table's lines
        assert lazy.getvalue() == loaded.getvalue()


def _modules_after(args: list[str], cwd: Path) -> set[str]:
    """The modules loaded by ``edigw ARGS`` run in a fresh interpreter in CWD."""
    code = ("import sys; from gateway.cli import main\n"
            "try:\n    main(sys.argv[1:], prog_name='edigw')\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDIGW_CONFIG": ""}
    env.pop("EDIGW_STORE_URL", None)
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, env=env, check=True)
    return set(done.stderr.rsplit("MODULES ", 1)[1].split())


def _named(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in names))


def test_help_imports_no_command_module(tmp_path: Path):
    """``edigw --help`` lists the commands from the table: no command's module, no
    SQLAlchemy, no pydantic."""
    loaded = _modules_after(["--help"], tmp_path)
    assert [m for m in loaded if m.startswith("gateway.cli.")] == ["gateway.cli.common"]
    assert _named(loaded, HEAVY) == []



def test_log_and_find_load_no_pydantic_structlog_web_or_xml(tmp_path: Path):
    """``edigw log`` on the default SQLite store reads a few settings without the pydantic
    settings model and logs nothing: it loads neither pydantic nor structlog (nor rich),
    nothing of the web console or the XML stack, and no Alembic once the store is current.
    ``edigw find`` needs the partners' profiles and the tracker's rules (pydantic) but no
    structlog, canonical model, alert book or web console either."""
    first = _modules_after(["log"], tmp_path)  # makes the store (Alembic migrates it)
    assert (tmp_path / "var" / "edigw.sqlite3").exists()
    assert "gateway.store.read.transmissions" in first and "sqlalchemy" in first
    loaded = _modules_after(["log"], tmp_path)
    assert "gateway.store.read.transmissions" in loaded
    assert _named(loaded, ("pydantic", "pydantic_core", "structlog", "rich", "fastapi",
                           "starlette", "lxml", "alembic", "gateway.config",
                           "gateway.core.canonical")) == []
    found = _modules_after(["find", "X1"], tmp_path)
    assert "gateway.tracker.explain" in found and "gateway.config" in found
    assert _named(found, ("structlog", "rich", "fastapi", "starlette", "lxml", "alembic",
                          "gateway.core.canonical", "gateway.tracker.alerts",
                          "gateway.tracker.rules", "gateway.web")) == []
