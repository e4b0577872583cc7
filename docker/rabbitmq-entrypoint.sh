#!/bin/sh
# The default user from RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS (a conf.d file), the
# data folder and cookie owned by rabbitmq, then the server (Debian's wrapper drops root).
set -eu
if [ "${1:-rabbitmq-server}" != rabbitmq-server ]; then exec "$@"; fi
if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
    umask 077
    {
        echo "default_user = $RABBITMQ_DEFAULT_USER"
        echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-}"
        echo "default_permissions.configure = .*"
        echo "default_permissions.read = .*"
        echo "default_permissions.write = .*"
    } > /etc/rabbitmq/conf.d/10-default-user.conf
    chown rabbitmq /etc/rabbitmq/conf.d/10-default-user.conf
    umask 022
fi
chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
[ -f /var/lib/rabbitmq/.erlang.cookie ] && chmod 0400 /var/lib/rabbitmq/.erlang.cookie
exec /usr/sbin/rabbitmq-server
