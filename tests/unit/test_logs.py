"""``gateway.logs``: a reading command defers structlog to its first use, and a logger taken
then writes as ``configure`` would have (stderr, the configured format and level)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True)


def test_a_deferred_configuration_applies_at_the_first_logger():
    done = _run("import sys\n"
                "from gateway import logs\n"
                "logs.defer('json', 'warning')\n"
                "assert 'structlog' not in sys.modules\n"
                "log = logs.logger('edigw.test')\n"
                "log.info('not shown')\n"
                "log.warning('shown', n=1)\n")
    assert done.stdout == ""
    line = json.loads(done.stderr.strip())
    assert line["event"] == "shown" and line["n"] == 1 and line["level"] == "warning"


def test_configure_then_logger_keeps_the_configuration():
    done = _run("from gateway import logs\n"
                "logs.configure('console', 'info')\n"
                "logs.logger('edigw.test').info('hello')\n")
    assert done.stdout == "" and "hello" in done.stderr and "[info" in done.stderr
