"""``edigw users`` and ``edigw tokens``: the console's accounts from the command line (the
first admin is made here). Every change goes to the audit trail as ``cli:<os user>``."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from gateway.cli.common import CliContext, emit_json, fail, json_option, open_store
from gateway.core.status import Role

if TYPE_CHECKING:
    from gateway.store.audit import AuditLog
    from gateway.store.users import User
    from gateway.web.auth import Authenticator, Users

#: The roles as plain strings: click shows enum members by their names (VIEWER …).
ROLES = tuple(role.value for role in Role)

#: The longest life of an API token, in days (100 years): a bigger number overflows dates.
MAX_TOKEN_DAYS = 36500


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@contextmanager
def _console(obj: CliContext) -> Iterator[tuple[Authenticator, AuditLog]]:
    """(Authenticator, AuditLog) on the configured store; edigw's refusals as one line."""
    from gateway.store.audit import AuditLog
    from gateway.web.auth import Authenticator, AuthError

    store = open_store(obj)
    try:
        yield Authenticator(store), AuditLog(store)
    except AuthError as exc:
        fail(str(exc), 1)
    finally:
        store.close()


def _password(env_var: str | None) -> str:
    """The password from the environment variable ENV_VAR, else prompted for twice."""
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise click.UsageError(f"environment variable {env_var} is not set or empty")
        return value
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _profile(user: User) -> dict[str, Any]:
    """What the audit trail keeps of a user, before and after a change."""
    return {k: getattr(user, k) for k in ("username", "display_name", "email", "role",
                                          "disabled", "partner_id")}


def _known_partner(obj: CliContext, partner: str | None) -> None:
    """Refuse a client's partner that no profile declares."""
    if partner is None:
        return
    from gateway.config import load_partners

    if load_partners(obj.settings.partners).get(partner) is None:
        fail(f"no partner {partner!r} in {obj.settings.partners}", 1)


_partner_opt = click.option("--partner", metavar="ID",
                            help="The partner a client user belongs to (role client only).")


_password_env = click.option("--password-env", metavar="VAR",
                             help="Read the password from this environment variable "
                                  "(else it is prompted for).")


@click.group()
def users() -> None:
    """The console's users and their roles (viewer, operator, admin; client: a partner's own
    user, who sees only that partner's data in the portal)."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", "display_name", help="Display name.")
@click.option("--email", help="Where password-reset links go.")
@_partner_opt
@_password_env
@json_option("One JSON document on stdout: the user as it now stands.")
@click.pass_obj
def users_add(obj: CliContext, username: str, role: str, display_name: str | None,
              email: str | None, partner: str | None, password_env: str | None,
              as_json: bool) -> None:
    """Create USERNAME with a role and a password (a client names its --partner)."""
    if role == Role.CLIENT and not partner:
        raise click.UsageError("a client user needs --partner")
    _known_partner(obj, partner)
    password = _password(password_env)
    with _console(obj) as (auth, audit):
        user = auth.users.create(username, password, role, display_name=display_name,
                                 email=email, partner_id=partner)
        audit.record(_actor(), "user.create", f"user:{user.username}", after=_profile(user))
    if as_json:
        emit_json(user.as_dict())
        return
    bound = f", partner {user.partner_id}" if user.partner_id else ""
    click.echo(f"user {user.username} created ({user.role}{bound})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def users_list(obj: CliContext, as_json: bool) -> None:
    """Every user with role, state and last login."""
    with _console(obj) as (auth, _audit):
        found = auth.users.list()
    for u in found:
        if as_json:
            click.echo(json.dumps(u.as_dict()))
        else:
            last = obj.shown(u.last_login_at) if u.last_login_at else "never"
            state = "disabled" if u.disabled else "enabled"
            bound = f" partner {u.partner_id}" if u.partner_id else ""
            click.echo(f"{u.username:<24} {u.role:<9} {state:<9} last login {last}{bound}")


def _change(obj: CliContext, username: str, action: str,
            apply: Callable[[Users, str], User], message: str, as_json: bool = False) -> None:
    """Apply one change to USERNAME, audit it with the profile before and after, and say
    MESSAGE (formatted with the username), or with AS_JSON print the user as it now
    stands."""
    with _console(obj) as (auth, audit):
        before = auth.users.by_username(username)
        if before is None:
            fail(f"no user {username!r}", 1)
        after = apply(auth.users, username)
        audit.record(_actor(), action, f"user:{username}", before=_profile(before),
                     after=_profile(after))
    if as_json:
        emit_json(dict(after.as_dict(), action=action))
        return
    click.echo(message.format(username=username))


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@_partner_opt
@json_option("One JSON document on stdout: the user as it now stands.")
@click.pass_obj
def users_set_role(obj: CliContext, username: str, role: str, partner: str | None,
                   as_json: bool) -> None:
    """Give USERNAME another role (a client names its --partner)."""
    _known_partner(obj, partner)
    _change(obj, username, "user.update",
            lambda u, name: u.set_role(name, role, partner_id=partner),
            "{username} is now " + role + (f" of partner {partner}" if partner else ""),
            as_json)


@users.command("disable")
@click.argument("username")
@json_option("One JSON document on stdout: the user as it now stands.")
@click.pass_obj
def users_disable(obj: CliContext, username: str, as_json: bool) -> None:
    """Refuse USERNAME from now on (its sessions end, its tokens stop working)."""
    _change(obj, username, "user.disable", lambda u, name: u.disable(name),
            "{username} disabled", as_json)


@users.command("enable")
@click.argument("username")
@json_option("One JSON document on stdout: the user as it now stands.")
@click.pass_obj
def users_enable(obj: CliContext, username: str, as_json: bool) -> None:
    """Let USERNAME log in again (clears a lock after failed logins)."""
    _change(obj, username, "user.enable", lambda u, name: u.enable(name), "{username} enabled",
            as_json)


@users.command("password")
@click.argument("username")
@_password_env
@json_option("One JSON document on stdout: the user as it now stands.")
@click.pass_obj
def users_password(obj: CliContext, username: str, password_env: str | None,
                   as_json: bool) -> None:
    """Set a new password for USERNAME (its sessions end)."""
    password = _password(password_env)
    _change(obj, username, "user.password", lambda u, name: u.set_password(name, password),
            "password of {username} changed", as_json)


@click.group()
def tokens() -> None:
    """API tokens for integrations (``Authorization: Bearer edigw_…``)."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What it is for (shown in lists).")
@click.option("--days", type=click.IntRange(min=1, max=MAX_TOKEN_DAYS),
              help=f"Expires after this many days (1 to {MAX_TOKEN_DAYS}).")
@json_option("One JSON document on stdout: the token record and the token itself.")
@click.pass_obj
def tokens_create(obj: CliContext, username: str, name: str, days: int | None,
                  as_json: bool) -> None:
    """Create a token; it is printed once, only its hash is kept."""
    from gateway.core import clock

    with _console(obj) as (auth, audit):
        user = auth.users.by_username(username)
        if user is None:
            fail(f"no user {username!r}", 1)
        expires = clock.now() + dt.timedelta(days=days) if days else None
        token, record = auth.tokens.create(user, name, expires_at=expires)
        audit.record(_actor(), "token.create", f"user:{username}",
                     after={"id": record.id, "name": record.name, "prefix": record.prefix})
    click.echo(f"token {record.id} for {username} ({name}); keep it now, it is not shown again:",
               err=True)
    if as_json:
        emit_json(dict(record.as_dict(), token=token))
        return
    click.echo(token)


@tokens.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def tokens_list(obj: CliContext, username: str | None, as_json: bool) -> None:
    """Tokens with their owner, prefix, last use and state (never the token)."""
    with _console(obj) as (auth, _audit):
        user = auth.users.by_username(username) if username else None
        if username and user is None:
            fail(f"no user {username!r}", 1)
        found = auth.tokens.list(user_id=user.id if user else None)
    for t in found:
        if as_json:
            click.echo(json.dumps(t.as_dict()))
            continue
        state = "revoked" if t.revoked_at else "active"
        used = obj.shown(t.last_used_at) if t.last_used_at else "never"
        click.echo(f"{t.id:>5} {t.prefix}… {t.username:<20} {state:<8} used {used}  {t.name}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
@json_option("One JSON document on stdout: the token record, revoked.")
@click.pass_obj
def tokens_revoke(obj: CliContext, token_id: int, as_json: bool) -> None:
    """Revoke token TOKEN_ID (see ``tokens list``)."""
    with _console(obj) as (auth, audit):
        record = auth.tokens.revoke(token_id)
        revoked = record.revoked_at.isoformat() if record.revoked_at else None
        audit.record(_actor(), "token.revoke", f"user:{record.username}",
                     before={"id": record.id, "name": record.name, "prefix": record.prefix},
                     after={"revoked_at": revoked})
    if as_json:
        emit_json(record.as_dict())
        return
    click.echo(f"token {token_id} revoked")
