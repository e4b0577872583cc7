"""``edigw users`` and ``edigw tokens``: the console's accounts from the command line (the
first admin is made here). Every change goes to the audit trail as ``cli:<os user>``.

Registered on ``edigw`` by ``gateway.cli`` (``main.add_command(users)``,
``main.add_command(tokens)``); the helpers of ``gateway.cli`` are imported inside the
functions, since that module imports this one.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

ROLES = ("viewer", "operator", "admin")


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@contextmanager
def _console(obj: Any) -> Iterator[tuple[Any, Any]]:
    """(Authenticator, AuditLog) on the configured store; edigw's refusals as one line."""
    from gateway.cli import _fail, _store
    from gateway.store.audit import AuditLog
    from gateway.web.auth import Authenticator, AuthError

    store = _store(obj)
    try:
        yield Authenticator(store), AuditLog(store)
    except AuthError as exc:
        _fail(str(exc), 1)
    finally:
        store.close()


def _password(env_var: str | None) -> str:
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise click.UsageError(f"environment variable {env_var} is not set or empty")
        return value
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)  # type: ignore[no-any-return]


def _profile(user: Any) -> dict[str, Any]:
    return {k: getattr(user, k) for k in ("username", "display_name", "email", "role",
                                          "disabled")}


_password_env = click.option("--password-env", metavar="VAR",
                             help="Read the password from this environment variable "
                                  "(else it is prompted for).")


@click.group()
def users() -> None:
    """The console's users and their roles (viewer, operator, admin)."""


@users.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", "display_name", help="Display name.")
@click.option("--email")
@_password_env
@click.pass_obj
def users_add(obj: Any, username: str, role: str, display_name: str | None,
              email: str | None, password_env: str | None) -> None:
    """Create USERNAME with a role and a password."""
    password = _password(password_env)
    with _console(obj) as (auth, audit):
        user = auth.users.create(username, password, role, display_name=display_name,
                                 email=email)
        audit.record(_actor(), "user.create", f"user:{user.username}", after=_profile(user))
    click.echo(f"user {user.username} created ({user.role})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def users_list(obj: Any, as_json: bool) -> None:
    """Every user with role, state and last login."""
    with _console(obj) as (auth, _audit):
        found = auth.users.list()
    for u in found:
        if as_json:
            click.echo(json.dumps(u.as_dict()))
        else:
            last = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
            state = "disabled" if u.disabled else "enabled"
            click.echo(f"{u.username:<24} {u.role:<9} {state:<9} last login {last}")


def _change(action: str, change: Callable[[Any], Any], message: str) -> Callable[..., None]:
    def run(obj: Any, username: str) -> None:
        with _console(obj) as (auth, audit):
            before = auth.users.by_username(username)
            if before is None:
                from gateway.cli import _fail

                _fail(f"no user {username!r}", 1)
            after = change(auth.users)(username)
            audit.record(_actor(), action, f"user:{username}", before=_profile(before),
                         after=_profile(after))
        click.echo(message.format(username=username))

    return run


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@click.pass_obj
def users_set_role(obj: Any, username: str, role: str) -> None:
    """Give USERNAME another role."""
    _change("user.update", lambda u: lambda name: u.set_role(name, role),
            "{username} is now " + role)(obj, username)


@users.command("disable")
@click.argument("username")
@click.pass_obj
def users_disable(obj: Any, username: str) -> None:
    """Refuse USERNAME from now on (its sessions end, its tokens stop working)."""
    _change("user.disable", lambda u: u.disable, "{username} disabled")(obj, username)


@users.command("enable")
@click.argument("username")
@click.pass_obj
def users_enable(obj: Any, username: str) -> None:
    """Let USERNAME log in again (clears a lock after failed logins)."""
    _change("user.enable", lambda u: u.enable, "{username} enabled")(obj, username)


@users.command("password")
@click.argument("username")
@_password_env
@click.pass_obj
def users_password(obj: Any, username: str, password_env: str | None) -> None:
    """Set a new password for USERNAME (its sessions end)."""
    password = _password(password_env)

    def change(u: Any) -> Callable[[str], Any]:
        return lambda name: u.set_password(name, password)

    _change("user.password", change, "password of {username} changed")(obj, username)


#: The longest life of an API token, in days (100 years): a bigger number overflows dates.
MAX_TOKEN_DAYS = 36500


@click.group()
def tokens() -> None:
    """API tokens for integrations (``Authorization: Bearer edigw_…``)."""


@tokens.command("create")
@click.option("--user", "username", required=True, help="The user the token acts as.")
@click.option("--name", required=True, help="What it is for (shown in lists).")
@click.option("--days", type=click.IntRange(min=1, max=MAX_TOKEN_DAYS),
              help=f"Expires after this many days (1 to {MAX_TOKEN_DAYS}).")
@click.pass_obj
def tokens_create(obj: Any, username: str, name: str, days: int | None) -> None:
    """Create a token; it is printed once, only its hash is kept."""
    from gateway.core import clock

    with _console(obj) as (auth, audit):
        user = auth.users.by_username(username)
        if user is None:
            from gateway.cli import _fail

            _fail(f"no user {username!r}", 1)
        expires = clock.now() + dt.timedelta(days=days) if days else None
        token, record = auth.tokens.create(user, name, expires_at=expires)
        audit.record(_actor(), "token.create", f"user:{username}",
                     after={"id": record.id, "name": record.name, "prefix": record.prefix})
    click.echo(f"token {record.id} for {username} ({name}); keep it now, it is not shown again:",
               err=True)
    click.echo(token)


@tokens.command("list")
@click.option("--user", "username", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines.")
@click.pass_obj
def tokens_list(obj: Any, username: str | None, as_json: bool) -> None:
    """Tokens with their owner, prefix, last use and state (never the token)."""
    with _console(obj) as (auth, _audit):
        user = auth.users.by_username(username) if username else None
        if username and user is None:
            from gateway.cli import _fail

            _fail(f"no user {username!r}", 1)
        found = auth.tokens.list(user_id=user.id if user else None)
    for t in found:
        if as_json:
            click.echo(json.dumps(t.as_dict()))
            continue
        state = "revoked" if t.revoked_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        click.echo(f"{t.id:>5} {t.prefix}… {t.username:<20} {state:<8} used {used}  {t.name}")


@tokens.command("revoke")
@click.argument("token_id", type=int)
@click.pass_obj
def tokens_revoke(obj: Any, token_id: int) -> None:
    """Revoke token TOKEN_ID (see ``tokens list``)."""
    with _console(obj) as (auth, audit):
        record = auth.tokens.revoke(token_id)
        audit.record(_actor(), "token.revoke", f"user:{record.username}",
                     before={"id": record.id, "name": record.name, "prefix": record.prefix},
                     after={"revoked_at": record.revoked_at.isoformat()})
    click.echo(f"token {token_id} revoked")
