"""A user's own account, and resetting a forgotten password by an e-mailed link.

The same for every role, a partner's client users and the wholesaler's staff alike:

- **Changes of one's own account** (``Account``): the e-mail address and the password, each
  only with the current password (a stolen session alone cannot take the account over).
  Wrong current passwords count as failed logins (``Users.authenticate``: the lock applies).
  A new password ends every session of the user (``Users.set_password``).
- **A reset link** (``PasswordResets.request_reset``): anyone may ask, naming a user name or
  an e-mail address; the answer never says whether it is known. A known, enabled user with
  an e-mail address gets a link ``<base>/password-reset/<token>``: ``secrets.token_urlsafe(32)``,
  of which only the sha256 is stored (``gateway.store.resets``), valid ``validity`` (30
  minutes unless ``[http] password_reset_minutes`` says otherwise). At most
  ``REQUESTS_PER_HOUR`` links per user in any hour: more are not sent (and the answer is
  the same).
- **Using a link** (``confirm_reset``): it must be known, unexpired and unused, and its user
  enabled; the new password must pass the policy (``auth.check_password``; a refused one
  leaves the link usable). Taking the link is one conditional update: of two uses, even in
  parallel, one wins. Then the password is set (sessions end, a login lock is cleared), the
  user's other open links are voided, and the audit trail records ``user.password_reset``.
- **An invitation** (``invite``): an admin opening an account gives no password; the user
  gets a "set your password" link valid ``INVITE_VALIDITY`` (48 hours), the same kind of
  link, not counted against the hourly limit.

Mail goes out through the gateway's ``[smtp]`` server (``channels.email.mailer.Mailer``).
The mail holds the link, never a password; logs and the audit trail never hold a token. The
routes look the name up and send the mail after they answered (``reset_later``, a
background task), so the time of the answer does not tell a known address either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import structlog

from gateway.channels.sections import EMAIL_PATTERN
from gateway.core import clock
from gateway.store.audit import AuditLog
from gateway.store.db import Store
from gateway.store.resets import PasswordReset, ResetRecords
from gateway.store.users import User
from gateway.web.auth import AuthError, LoginRefused, Users, check_password

log = structlog.get_logger("edigw.web.account")

RESET_VALIDITY = dt.timedelta(minutes=30)
INVITE_VALIDITY = dt.timedelta(hours=48)
REQUESTS_PER_HOUR = 3
#: Where a reset link leads, under the console's public URL.
RESET_PATH = "/password-reset/"
_EMAIL = re.compile(EMAIL_PATTERN)


class AccountError(AuthError):
    """A change of one's own account that cannot be made (wrong current password, a bad
    address); the message says why."""

    status = 400


class ResetRefused(AuthError):
    """A reset link that cannot be used: unknown, expired, used, or its user disabled. The
    message is the same for all (``reason`` is for the log)."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__("this link is not valid (expired or already used); ask for a new one")
        self.reason = reason


class ResetMailer(Protocol):
    """What mails the links (``gateway.channels.email.mailer.Mailer``)."""

    def message(self, to: list[str], subject: str, body: str) -> EmailMessage: ...

    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True, slots=True)
class ResetMail:
    """A link to mail to one user. ``body`` holds the token: never log it."""

    username: str
    to: str
    subject: str
    body: str = field(repr=False)


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> dt.datetime:
    return clock.now().astimezone(dt.UTC)


def reset_link(base: str, token: str) -> str:
    """The link a mail carries: ``base`` is the console's public URL (scheme and host)."""
    return base.rstrip("/") + RESET_PATH + token


def _minutes(span: dt.timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    if minutes % 60 == 0 and minutes >= 120:
        return f"{minutes // 60} hours"
    return f"{minutes} minutes"


def _greeting(user: User) -> str:
    return f"Hello {user.display_name or user.username},"


def check_email(email: str) -> str:
    """The address, trimmed, if it looks like one (``AccountError`` otherwise)."""
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise AccountError(f"not an e-mail address: {email!r}")
    return email


class PasswordResets:
    """Reset links: asked for, mailed, used (see the module's docstring)."""

    def __init__(self, store: Store, *, validity: dt.timedelta = RESET_VALIDITY,
                 invite_validity: dt.timedelta = INVITE_VALIDITY,
                 per_hour: int = REQUESTS_PER_HOUR) -> None:
        self.store = store
        self.users = Users(store)
        self.records = ResetRecords(store)
        self.audit = AuditLog(store)
        self.validity = validity
        self.invite_validity = invite_validity
        self.per_hour = per_hour

    # -- asking ---------------------------------------------------------------------------

    def _issue(self, user: User, *, validity: dt.timedelta, remote: str | None,
               limit: int | None) -> str | None:
        """A new link's token for ``user`` (None when ``limit`` links are already out in
        the last hour)."""
        token = secrets.token_urlsafe(32)
        now = _now()
        reset = PasswordReset(token_hash=sha256(token), user_id=user.id, created_at=now,
                              expires_at=now + validity, used_at=None, remote=remote)
        if not self.records.add_unless_over(reset, since=now - dt.timedelta(hours=1),
                                            limit=limit):
            return None
        return token

    def _named(self, login: str) -> list[User]:
        """The users ``login`` names: the user of that name, else those of that address."""
        user = self.users.by_username(login)
        if user is not None:
            return [user]
        return self.users.records.by_email(login) if "@" in login else []

    def request_reset(self, login: str, *, link_base: str,
                      remote: str | None = None) -> list[ResetMail]:
        """Links for the user(s) ``login`` (a user name or an e-mail address) names: the
        mails to send, possibly none (unknown, disabled, no address, too many requests).
        The caller answers the same whatever this returns, and sends after answering."""
        login = login.strip()[:254]
        named = self._named(login) if login else []
        if not named:
            log.info("password_reset_unknown", remote=remote)  # not the text: a typed password?
        mails = []
        for user in named:
            if user.disabled or not user.email:
                log.info("password_reset_not_sent", user=user.username, remote=remote,
                         reason="disabled" if user.disabled else "no e-mail address")
                continue
            token = self._issue(user, validity=self.validity, remote=remote,
                                limit=self.per_hour)
            if token is None:
                log.warning("password_reset_throttled", user=user.username, remote=remote,
                            limit=self.per_hour)
                continue
            log.info("password_reset_requested", user=user.username, remote=remote)
            mails.append(ResetMail(
                username=user.username, to=user.email, subject="Your password reset link",
                body="\n".join([
                    _greeting(user), "",
                    f"Someone, hopefully you, asked to reset the password of the account "
                    f"\"{user.username}\".",
                    f"To choose a new password, open this link within "
                    f"{_minutes(self.validity)}:", "",
                    f"    {reset_link(link_base, token)}", "",
                    "The link works once. If you did not ask for it, ignore this mail: "
                    "your password stays as it is.", ""])))
        return mails

    def invite(self, user: User, *, link_base: str, by: str,
               remote: str | None = None) -> ResetMail:
        """A "set your password" link for a user an admin just opened (``by``)."""
        if user.disabled:
            raise AccountError(f"user {user.username} is disabled")
        if not user.email:
            raise AccountError(f"user {user.username} has no e-mail address to invite")
        token = self._issue(user, validity=self.invite_validity, remote=remote, limit=None)
        assert token is not None  # no limit
        self.audit.record(by, "user.invite", f"user:{user.username}",
                          after={"email": user.email,
                                 "valid_hours": self.invite_validity.total_seconds() / 3600},
                          remote=remote)
        log.info("password_invite", user=user.username, by=by)
        partner = f" (partner {user.partner_id})" if user.partner_id else ""
        base = link_base.rstrip("/")
        return ResetMail(
            username=user.username, to=user.email, subject="Your account: set your password",
            body="\n".join([
                _greeting(user), "",
                f"An account \"{user.username}\"{partner} was opened for you on the "
                f"EDI console at {base}/.",
                f"To set your password, open this link within "
                f"{_minutes(self.invite_validity)}:", "",
                f"    {reset_link(link_base, token)}", "",
                f"Then log in at {base}/login with the user name \"{user.username}\".", ""]))

    # -- using ----------------------------------------------------------------------------

    def _open(self, token: str) -> tuple[PasswordReset, User]:
        reset = self.records.get(sha256(token)) if token else None
        if reset is None:
            raise ResetRefused("unknown link")
        if reset.used_at is not None:
            raise ResetRefused("link already used")
        if not reset.open_at(_now()):
            raise ResetRefused("link expired")
        user = self.users.get(reset.user_id)
        if user is None:
            raise ResetRefused("user gone")
        if user.disabled:
            raise ResetRefused(f"user {user.username} is disabled")
        return reset, user

    def check(self, token: str) -> User:
        """The user an open link is for (``ResetRefused`` otherwise); uses nothing."""
        return self._open(token)[1]

    def confirm_reset(self, token: str, new_password: str, *,
                      remote: str | None = None) -> User:
        """Set ``new_password`` through the link ``token`` (see the module's docstring):
        ``ResetRefused`` for a link that cannot be used, ``UserError`` for a password the
        policy refuses (the link stays usable then)."""
        try:
            reset, user = self._open(token)
        except ResetRefused as exc:
            log.info("password_reset_refused", reason=exc.reason, remote=remote)
            raise
        check_password(new_password, user.username)  # before the link is spent
        if not self.records.take(reset.token_hash, _now()):
            log.info("password_reset_refused", reason="taken in parallel", remote=remote)
            raise ResetRefused("link taken by another request")
        done = self.users.set_password(user.username, new_password)
        voided = self.records.void_open(user.id, _now())
        self.audit.record(user.username, "user.password_reset", f"user:{user.username}",
                          after={"via": "e-mailed link", "other_links_voided": voided},
                          remote=remote)
        log.info("password_reset_done", user=user.username, remote=remote)
        return done


class Account:
    """A user's changes to their own account, each with the current password (audited)."""

    def __init__(self, store: Store) -> None:
        self.users = Users(store)
        self.records = ResetRecords(store)
        self.audit = AuditLog(store)

    def _prove(self, user: User, current_password: str) -> None:
        try:
            self.users.authenticate(user.username, current_password)
        except LoginRefused as exc:
            log.info("account_change_refused", user=user.username, reason=exc.reason)
            raise AccountError("the current password is wrong") from exc

    def change_email(self, user: User, email: str, current_password: str, *,
                     remote: str | None = None) -> User:
        """A new address; the open reset links (sent to the old one) are voided."""
        email = check_email(email)
        self._prove(user, current_password)
        done = self.users.set_profile(user.username, display_name=user.display_name,
                                      email=email)
        self.records.void_open(user.id, _now())
        self.audit.record(user.username, "user.email_change", f"user:{user.username}",
                          before={"email": user.email}, after={"email": email}, remote=remote)
        return done

    def change_password(self, user: User, current_password: str, new_password: str, *,
                        remote: str | None = None) -> User:
        """A new password (policy checked first); every session of the user ends."""
        check_password(new_password, user.username)
        self._prove(user, current_password)
        done = self.users.set_password(user.username, new_password)
        self.records.void_open(user.id, _now())
        self.audit.record(user.username, "user.password_change", f"user:{user.username}",
                          after={"password": "changed"}, remote=remote)
        return done


# -- what the routes share -------------------------------------------------------------------


def resets_for(gateway: Any) -> PasswordResets:
    """The reset links of a gateway, their validity from ``[http] password_reset_minutes``."""
    minutes = getattr(getattr(getattr(gateway, "settings", None), "http", None),
                      "password_reset_minutes", None)
    validity = dt.timedelta(minutes=minutes) if isinstance(minutes, int) else RESET_VALIDITY
    return PasswordResets(gateway.store, validity=validity)


def mailer_of(gateway: Any) -> ResetMailer | None:
    """The gateway's mailer (``[smtp]``), None when it has no SMTP server."""
    found: ResetMailer | None = getattr(gateway, "mailer", None)
    if found is not None:
        return found
    smtp = getattr(getattr(gateway, "settings", None), "smtp", None)
    if smtp is None:
        return None
    from gateway.channels.email.mailer import Mailer
    from gateway.store.channels import ChannelRecords

    return Mailer(smtp, records=ChannelRecords(gateway.store))


def link_base(gateway: Any, scheme: str, netloc: str) -> str:
    """Where links lead: ``[http] public_url`` if set, else the scheme and host the request
    came to (set ``public_url`` behind a proxy, or when the Host header is not to be
    trusted: the link in the mail is built from it)."""
    public = getattr(getattr(getattr(gateway, "settings", None), "http", None),
                     "public_url", None)
    if isinstance(public, str) and public:
        return public.rstrip("/")
    return f"{scheme}://{netloc}"


async def reset_later(resets: PasswordResets, mailer: ResetMailer | None, login: str, *,
                      link_base: str, remote: str | None) -> int:
    """``request_reset`` and ``send_mails``, for a background task run after the answer:
    neither the store's work nor the mail make a known address answer later. How many
    mails went; a fault is logged, never raised."""
    try:
        mails = await asyncio.to_thread(resets.request_reset, login, link_base=link_base,
                                        remote=remote)
    except Exception as exc:  # the store away: the requester may ask again
        log.warning("password_reset_failed", error=type(exc).__name__, remote=remote)
        return 0
    return await send_mails(mailer, mails)


async def send_mails(mailer: ResetMailer | None, mails: list[ResetMail]) -> int:
    """Mail each link; how many went. A failure is logged (without the link), not raised:
    the requester got its answer already."""
    sent = 0
    for mail in mails:
        if mailer is None:
            log.warning("password_reset_not_mailed", user=mail.username,
                        reason="no [smtp] server configured")
            continue
        try:
            await mailer.send(mailer.message([mail.to], mail.subject, mail.body))
        except Exception as exc:  # MailError, or a fault of the mailer: never the requester's
            log.warning("password_reset_not_mailed", user=mail.username,
                        error=type(exc).__name__)
            continue
        sent += 1
    return sent
