#!/usr/bin/env bash
# Install the test dependencies, make sure the servers the tests talk to are running,
# and run the whole test suite. Extra arguments go to pytest.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh tests/unit # a part
# With CI=true a server that cannot be reached is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }

reachable() { # host port
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

wait_for() { # name host port seconds
  for _ in $(seq 1 "$4"); do reachable "$2" "$3" && return 0; sleep 1; done
  return 1
}

apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null && APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

ensure_rabbitmq() {
  reachable 127.0.0.1 5672 && return 0
  log "RabbitMQ not answering on 127.0.0.1:5672; starting it"
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server || true
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for RabbitMQ 127.0.0.1 5672 60 && return 0
  fi
  return 1
}

ensure_postgresql() {
  reachable 127.0.0.1 5432 && return 0
  log "PostgreSQL not answering on 127.0.0.1:5432; starting it"
  ls /etc/postgresql >/dev/null 2>&1 || apt_install postgresql || true
  if ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
    wait_for PostgreSQL 127.0.0.1 5432 30 && return 0
  fi
  return 1
}

ensure_program() { # program debian-package: the tests start these servers themselves
  has() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
  has "$1" && return 0
  log "$1 not installed; installing $2"
  apt_install "$2" || true
  has "$1"
}

missing=()
ensure_rabbitmq || missing+=("RabbitMQ (127.0.0.1:5672)")
ensure_postgresql || missing+=("PostgreSQL (127.0.0.1:5432)")
ensure_program sshd openssh-server || missing+=("OpenSSH sshd (openssh-server)")
ensure_program dovecot dovecot-imapd || missing+=("Dovecot (dovecot-imapd)")
# Postfix delivers the documents edigw e-mails to partners into Dovecot's mailboxes (the
# outbound e-mail tests start a private instance); preseeded so that apt asks nothing.
if ! command -v postfix >/dev/null && ! [ -x /usr/sbin/postfix ] && [ "$(id -u)" = 0 ]; then
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
fi
ensure_program postfix postfix || missing+=("Postfix (postfix: outbound e-mail delivered to Dovecot)")
ensure_program openssl openssl || missing+=("the openssl command (AS2 messages built independently)")
ensure_program chromium chromium || missing+=("Chromium (the console's browser tests)")
# The image and compose tests start their own Docker daemon and make base images locally.
ensure_program dockerd docker.io || missing+=("Docker (docker.io: the image and compose tests)")
ensure_program debootstrap debootstrap || missing+=("debootstrap (base images for the Docker tests)")
ensure_program docker-compose docker-compose || missing+=("docker-compose (the compose file's test)")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "${CI:-}" = "true" ]; then
    log "missing services in CI: ${missing[*]}"; exit 1
  fi
  log "not running (their tests will be skipped): ${missing[*]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
log "ruff"
.venv/bin/ruff check gateway tests bench
log "mypy (configured in pyproject.toml: gateway/, strict on gateway.core)"
.venv/bin/mypy
log "pytest"
exec .venv/bin/python -m pytest "$@"
