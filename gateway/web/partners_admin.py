"""Partner administration for the operator console: changes to partner profiles, audited.

Each change reads the profile's TOML as written (``${VAR}`` references unexpanded), edits it,
validates the result as ``load_partners`` would (environment expanded, the model's rules, the
id equal to the file name, AS2 ids, phone numbers and UNB ids unique across partners), writes
it atomically (a temporary file, then ``os.replace``) only if ``edigw check-config`` would accept
the configuration it leaves (``gateway.channels.checks``: what the change adds to its problems
refuses it; files the profile names, such as a certificate, are judged in place and taken
away again on refusal), reloads the directory, records the
change in the audit trail (the changed part before and after, secrets masked) and hands the
new directory to ``on_change``. A change that fails validation leaves the file untouched.
Comments in a rewritten profile are not kept (``tomli_w`` writes plain TOML).

A channel's own settings of a partner (a text-message channel's phone numbers) are changed by
that channel's operations (``gateway.channels.<name>.admin``) through ``change``, the same
read-modify-write, validation and audit.

Secrets set here (SFTP password, SFTP private key) go to files under ``secrets_dir/<partner>``
(folder 0700, file 0600) that the profile points to (``password_file``, ``key_file``); they
are never written into the profile, logged, returned or audited in clear. A key uploaded with
a passphrase is stored decrypted in its 0600 file: the profile has no place for a passphrase
file, and the passphrase beside the key would protect nothing more. Partners' AS2
certificates go to ``certs_dir/<partner>/<sha256 prefix>.pem``.

Errors::

    PartnerAdminError
    ├── NotFound   no such partner (404)
    ├── Invalid    a value is refused: .field, .reason (422)
    │   └── CheckFailed  ``edigw check-config`` would refuse the result: .problems (422)
    ├── Conflict   a value belongs to another partner or the id exists: .field, .value,
    │              .owner (409)
    └── NotReady   promotion to live refused: .missing, the go-live checklist's items not
                   done (409)
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import datetime as dt
import hashlib
import io
import os
import re
import tempfile
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import paramiko
import tomli_w
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import ValidationError

from gateway.config import (
    PARTNER_STATES,
    DocumentSettings,
    GatewaySettings,
    Identifiers,
    Partner,
    PartnerDirectory,
    _unique_ids,
    _validate,
    load_partners,
)
from gateway.config_file import expand
from gateway.core import clock
from gateway.core.errors import ConfigError, EdigwError
from gateway.store.audit import AuditLog, mask_secrets
from gateway.store.certificates import PartnerCertificate, judged, unreadable
from gateway.tracker.onboarding import Item, checklist, missing

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
#: One writer at a time over the partner folder (the API and the pages share it).
_LOCK = threading.RLock()


class PartnerAdminError(EdigwError):
    """A partner change was refused."""

    def __init__(self, message: str, *, partner: str | None = None) -> None:
        self.partner = partner
        super().__init__(message)


class NotFound(PartnerAdminError):
    """No profile with this id."""

    def __init__(self, partner: str) -> None:
        super().__init__(f"no partner {partner!r}", partner=partner)


class Invalid(PartnerAdminError):
    """A value the profile cannot take; ``field`` names it (``sftp.password``, ``phone``)."""

    def __init__(self, field: str, reason: str, *, partner: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}", partner=partner)


class CheckFailed(Invalid):
    """The changed profile (and the files it names) would make ``edigw check-config``
    refuse the configuration: ``problems`` are its lines this change would add."""

    def __init__(self, problems: Sequence[str], *, partner: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("check-config", "edigw check-config would refuse it: "
                         + "; ".join(self.problems), partner=partner)


class Conflict(PartnerAdminError):
    """``value`` of ``field`` already belongs to partner ``owner`` (or the id exists)."""

    def __init__(self, field: str, value: str, owner: str, *, partner: str | None = None) -> None:
        self.field = field
        self.value = value
        self.owner = owner
        super().__init__(f"{field} {value!r} already belongs to partner {owner}",
                         partner=partner)


class NotReady(PartnerAdminError):
    """Promotion to live refused: ``missing`` are the go-live checklist's items not done
    (``gateway.tracker.onboarding``); an admin may force it with a reason."""

    def __init__(self, partner: str, missing: Sequence[Item]) -> None:
        self.missing = list(missing)
        super().__init__(f"partner {partner} is not ready to go live: "
                         + "; ".join(f"{i.name} ({i.detail})" for i in self.missing)
                         + " (force it with a reason to go live anyway)", partner=partner)


Edit = Callable[[dict[str, Any]], None]
Part = Callable[[dict[str, Any]], Any]


class PartnerAdmin:
    """Audited changes to the partner profiles under ``settings.partners``."""

    def __init__(self, settings: GatewaySettings, *, audit: AuditLog,
                 on_change: Callable[[PartnerDirectory], None] | None = None,
                 secrets_dir: Path = Path("var/secrets"), certs_dir: Path = Path("var/certs"),
                 env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.folder = Path(settings.partners)
        self.audit = audit
        self.on_change = on_change
        self.secrets_dir = Path(secrets_dir)
        self.certs_dir = Path(certs_dir)
        self.env = os.environ if env is None else env

    # -- reading ------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every profile as ``get`` shows it, by id."""
        return [self._shown(p) for p in self._directory()]

    def get(self, pid: str) -> dict[str, Any]:
        """One profile with its defaults, secrets masked, and its file."""
        partner = self._directory().get(pid) if _ID.match(pid) else None
        if partner is None:
            raise NotFound(pid)
        return self._shown(partner)

    def _shown(self, partner: Partner) -> dict[str, Any]:
        shown: dict[str, Any] = mask_secrets(partner.model_dump(mode="json"))
        shown["file"] = partner.source
        return shown

    def _directory(self) -> PartnerDirectory:
        """The profiles as they are on disk; one that does not load is left out (its
        problem listed in ``problems``)."""
        return load_partners(self.folder, self.env)

    # -- accounts -------------------------------------------------------------------------

    def create(self, actor: str, pid: str, name: str, *, unb: Sequence[str | dict[str, str]] = (),
               gln: Sequence[str] = (), emails: Sequence[str] = (),
               channels: Sequence[str] = ("folder",), remote: str | None = None,
               identifiers: Mapping[str, Any] | None = None,
               documents: Sequence[Mapping[str, Any]] = (), state: str | None = None
               ) -> dict[str, Any]:
        """A new profile ``<pid>.toml``; Conflict when the id or an identifier is taken.
        ``identifiers`` as ``set_identifiers`` takes them (besides ``unb``, ``gln`` and
        ``emails``), ``documents`` as ``set_documents``, ``state`` one of the onboarding
        states (default live)."""
        if not _ID.match(pid):
            raise Invalid("id", "lower-case letters, digits, '.', '_' and '-' (64 at most), "
                                "starting with a letter or digit")
        if not name or not name.strip():
            raise Invalid("name", "must not be empty", partner=pid)
        given: dict[str, Any] = dict(identifiers or {})
        if unb:
            given["unb"] = [*given.get("unb", []), *unb]
        if gln:
            given["gln"] = [*given.get("gln", []), *gln]
        if emails:
            given["email"] = [*given.get("email", []), *emails]
        idents = {k: v for k, v in _identifiers(given, pid).items() if v}
        raw: dict[str, Any] = {"id": pid, "name": name.strip(), "channels": list(channels),
                               "identifiers": idents}
        if state is not None and state != "live":
            if state not in PARTNER_STATES:
                raise Invalid("state", f"{state!r} is not a state: one of "
                              f"{', '.join(PARTNER_STATES)}", partner=pid)
            raw["state"] = state
        if documents:
            raw["documents"] = self._documents(pid, documents)
        with _LOCK:
            path = self._path(pid)
            if path.exists():
                raise Conflict("id", pid, pid, partner=pid)
            self._check_emails(pid, idents.get("email", []))
            directory = self._commit(pid, None, raw)
            self.audit.record(actor, "partner.create", _target(pid), after=raw, remote=remote)
        return self._after(pid, directory)

    def disable(self, actor: str, pid: str, *, remote: str | None = None) -> dict[str, Any]:
        """``enabled = false``: the gateway no longer polls or accepts for it."""
        def edit(raw: dict[str, Any]) -> None:
            raw["enabled"] = False
        return self._change(actor, pid, "partner.disable", edit, _enabled, remote=remote)

    def enable(self, actor: str, pid: str, *, remote: str | None = None) -> dict[str, Any]:
        """Enabled again (the ``enabled`` key is dropped: true is the default)."""
        def edit(raw: dict[str, Any]) -> None:
            raw.pop("enabled", None)
        return self._change(actor, pid, "partner.enable", edit, _enabled, remote=remote)

    # -- onboarding -----------------------------------------------------------------------

    def checklist(self, pid: str) -> Sequence[Item]:
        """The partner's go-live checklist (``tracker.onboarding.checklist``)."""
        partner = self._directory().get(pid) if _ID.match(pid) else None
        if partner is None:
            raise NotFound(pid)
        return checklist(self.audit.store, partner)

    def set_state(self, actor: str, pid: str, state: str, *, reason: str, force: bool = False,
                  remote: str | None = None,
                  release: Callable[[str], int] | None = None) -> dict[str, Any]:
        """Move the partner to ``state`` (draft, test, live, suspended), audited as
        ``partner.state`` with who, why (``reason``, required) and the state before and
        after. Going live from draft or test needs the go-live checklist done (NotReady
        with what is missing) unless ``force``, whose missing items are audited too. Once
        live, ``release(pid)`` processes what was held while it was suspended; how many is
        in the answer's ``released``."""
        if state not in PARTNER_STATES:
            raise Invalid("state", f"{state!r} is not a state: one of "
                          f"{', '.join(PARTNER_STATES)}", partner=pid)
        if not reason or not reason.strip():
            raise Invalid("reason", "a reason is required to change a partner's state",
                          partner=pid)
        with _LOCK:
            current = self._directory().get(pid) if _ID.match(pid) else None
            if current is None:
                raise NotFound(pid)
            gaps: Sequence[Item] = ()
            if state == "live" and current.state in ("draft", "test"):
                gaps = missing(checklist(self.audit.store, current))
                if gaps and not force:
                    raise NotReady(pid, gaps)

            def edit(raw: dict[str, Any]) -> None:
                if state == "live":
                    raw.pop("state", None)  # the default
                else:
                    raw["state"] = state

            note: dict[str, Any] = {"reason": reason.strip()}
            if gaps:
                note |= {"forced": True, "missing": [i.as_dict() for i in gaps]}
            shown = self._change(actor, pid, "partner.state", edit, _state, remote=remote,
                                 note=note)
        released = release(pid) if state == "live" and release is not None else 0
        if released:
            self.audit.record(actor, "partner.release", _target(pid),
                              after={"transmissions": released, "reason": reason.strip()},
                              remote=remote)
        return {**shown, "released": released}

    # -- contacts -------------------------------------------------------------------------

    def set_contacts(self, actor: str, pid: str, *, emails: Sequence[str] | None = None,
                     reply_to: Sequence[str] | None = None, name: str | None = None,
                     remote: str | None = None) -> dict[str, Any]:
        """The partner's name, its mail addresses (``identifiers.email``, which identify
        its mails) and where replies go (``email.reply_to``); None leaves one as it is."""
        new_emails = _emails(emails, "emails") if emails is not None else None
        new_reply = _emails(reply_to, "reply_to") if reply_to is not None else None
        if name is not None and not name.strip():
            raise Invalid("name", "must not be empty", partner=pid)

        def edit(raw: dict[str, Any]) -> None:
            if name is not None:
                raw["name"] = name.strip()
            if new_emails is not None:
                self._check_emails(pid, new_emails)
                _set(raw.setdefault("identifiers", {}), "email", new_emails)
            if new_reply is not None:
                _set(raw.setdefault("email", {}), "reply_to", new_reply)

        def part(raw: dict[str, Any]) -> dict[str, Any]:
            return {"name": raw.get("name"),
                    "emails": raw.get("identifiers", {}).get("email", []),
                    "reply_to": raw.get("email", {}).get("reply_to", [])}
        return self._change(actor, pid, "partner.contacts", edit, part, remote=remote)

    def _check_emails(self, pid: str, emails: Sequence[str]) -> None:
        """A mail is identified by its sender: an address may belong to one partner only."""
        for other in self._directory():
            if other.id == pid:
                continue
            theirs = {e.lower() for e in other.identifiers.email}
            for e in emails:
                if e.lower() in theirs:
                    raise Conflict("emails", e, other.id, partner=pid)

    # -- SFTP -----------------------------------------------------------------------------

    def set_sftp_password(self, actor: str, pid: str, password: str, *,
                          remote: str | None = None) -> dict[str, Any]:
        """Set or rotate the SFTP password: written to ``<secrets>/<pid>/sftp-password``
        (0600), ``sftp.password_file`` points to it, an inline ``password`` is dropped."""
        if not password or password != password.strip() or "\n" in password:
            raise Invalid("password", "must not be empty nor start or end with blanks",
                          partner=pid)
        secret = self._secret_path(pid, "sftp-password")

        def edit(raw: dict[str, Any]) -> None:
            sftp = _sftp(raw, pid)
            sftp.pop("password", None)
            sftp["password_file"] = str(secret)

        return self._change(actor, pid, "partner.sftp-password", edit, _sftp_auth,
                            files=[(secret, password.encode("utf-8"), 0o600)], remote=remote,
                            changed=True)

    def set_sftp_key(self, actor: str, pid: str, private_key_pem: str | bytes,
                     passphrase: str | None = None, *, remote: str | None = None
                     ) -> dict[str, Any]:
        """Set or rotate the SFTP private key (OpenSSH or PEM; RSA, ECDSA or Ed25519),
        stored unencrypted in ``<secrets>/<pid>/sftp-key`` (0600) as ``sftp.key_file``.
        The answer's ``public_key`` is the line to give the partner."""
        stored, public_line, fp = _private_key(private_key_pem, passphrase, pid)
        secret = self._secret_path(pid, "sftp-key")

        def edit(raw: dict[str, Any]) -> None:
            sftp = _sftp(raw, pid)
            sftp.pop("key_passphrase", None)
            sftp["key_file"] = str(secret)

        shown = self._change(actor, pid, "partner.sftp-key", edit, _sftp_auth,
                             files=[(secret, stored, 0o600)], remote=remote, changed=True,
                             note={"public_key": public_line, "fingerprint": fp})
        return {**shown, "public_key": public_line, "fingerprint": fp}

    def set_sftp_host_key(self, actor: str, pid: str, host_key_line: str, *,
                          remote: str | None = None) -> dict[str, Any]:
        """Pin the server's key (``ssh-ed25519 AAAA…``, a known_hosts line's hosts column
        dropped): a server presenting another key is refused."""
        from gateway.channels.sftp.hostkey import PinnedHostKeys, fingerprint

        try:
            pinned = PinnedHostKeys.from_line(pid, host_key_line.strip())
        except ValueError as exc:
            raise Invalid("host_key", str(exc), partner=pid) from None
        key = pinned.keys[0]
        line = f"{key.get_name()} {key.get_base64()}"

        def edit(raw: dict[str, Any]) -> None:
            _sftp(raw, pid)["host_key"] = line

        def part(raw: dict[str, Any]) -> dict[str, Any]:
            sftp = raw.get("sftp", {})
            return {"host_key": sftp.get("host_key"), "known_hosts": sftp.get("known_hosts")}
        shown = self._change(actor, pid, "partner.sftp-host-key", edit, part, remote=remote)
        return {**shown, "fingerprint": fingerprint(key)}

    # -- AS2 ------------------------------------------------------------------------------

    def upload_as2_certificate(self, actor: str, pid: str, data: bytes, *,
                               as2_id: str | None = None, remote: str | None = None
                               ) -> dict[str, Any]:
        """The partner's new AS2 certificate (PEM or DER) becomes the first of
        ``as2.certificates``; the previous first stays second while the rotation is under
        way, older ones are dropped. ``as2_id`` creates the ``[as2]`` section if missing."""
        cert = _certificate(data, pid)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
        path = self.certs_dir / pid / f"{digest[:16]}.pem"
        info = {"subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "sha256": digest, "file": str(path)}

        def edit(raw: dict[str, Any]) -> None:
            as2 = raw.get("as2")
            if as2 is None:
                if not as2_id:
                    raise Invalid("as2_id", "the profile has no [as2] section: give the "
                                            "partner's AS2 id", partner=pid)
                as2 = raw["as2"] = {"as2_id": as2_id}
            current = [str(c) for c in as2.get("certificates", [])]
            as2["certificates"] = [str(path)] + [c for c in current[:1] if c != str(path)]

        def part(raw: dict[str, Any]) -> dict[str, Any]:
            as2 = raw.get("as2") or {}
            return {"as2_id": as2.get("as2_id"), "certificates": as2.get("certificates", [])}
        shown = self._change(actor, pid, "partner.as2-certificate", edit, part,
                             files=[(path, pem, 0o644)], remote=remote, note=info)
        return {**shown, "certificate": info}

    def certificates(self, pid: str, *, now: dt.datetime | None = None
                     ) -> Sequence[PartnerCertificate]:
        """The certificates the partner's ``[as2]`` names (current, rotation, CA), each read
        from its file and judged now (``gateway.store.certificates``)."""
        from gateway.channels.as2.keys import load_ca_certificates, load_partner_certificates

        partner = self._directory().get(pid) if _ID.match(pid) else None
        if partner is None:
            raise NotFound(pid)
        if partner.as2 is None:
            return []
        now = now or clock.now()
        warning = (self.settings.as2.certificate_warning_days
                   if self.settings.as2 is not None else 30)
        places = [(f, "current" if i == 0 else "rotation")
                  for i, f in enumerate(partner.as2.certificates)]
        places += [(f, "ca") for f in partner.as2.ca_certificates]
        out: builtins.list[PartnerCertificate] = []
        for file, place in places:
            # One file at a time (as the AS2 channel's check reads them): one bad file does
            # not hide the others.
            one = partner.as2.model_copy(update={
                "certificates": [] if place == "ca" else [file],
                "ca_certificates": [file] if place == "ca" else []})
            try:
                found = (load_ca_certificates(one) if place == "ca"
                         else load_partner_certificates(one))
            except ConfigError as exc:
                out.append(unreadable(str(file), place, str(exc)))
                continue
            out += [judged(c, str(file), place, now, warning) for c in found]
        return out

    def remove_certificate(self, actor: str, pid: str, fingerprint: str, *,
                           remote: str | None = None) -> dict[str, Any]:
        """Take the certificate whose SHA-256 fingerprint is ``fingerprint`` out of the
        partner's ``[as2]`` (``certificates`` or ``ca_certificates``); its file is kept.
        Refused as check-config would (an AS2 partner needs a certificate); a file holding
        several certificates is not split here."""
        wanted = fingerprint.strip().lower().replace(":", "")
        listed = self.certificates(pid)
        match = [c for c in listed if c.fingerprint == wanted]
        if not match:
            raise Invalid("fingerprint", f"partner {pid} has no certificate {fingerprint}",
                          partner=pid)
        file = match[0].file
        if sum(1 for c in listed if c.file == file) > 1:
            raise Invalid("fingerprint", f"{file} holds several certificates: change that "
                          "file or the profile by hand", partner=pid)

        def edit(raw: dict[str, Any]) -> None:
            as2 = raw.get("as2") or {}
            for key in ("certificates", "ca_certificates"):
                if key in as2:
                    as2[key] = [c for c in as2[key] if str(c) != file]

        def part(raw: dict[str, Any]) -> dict[str, Any]:
            as2 = raw.get("as2") or {}
            return {"certificates": as2.get("certificates", []),
                    "ca_certificates": as2.get("ca_certificates", [])}
        gone = match[0]
        return self._change(actor, pid, "partner.certificate-remove", edit, part, remote=remote,
                            note={"removed": {"subject": gone.subject, "serial": gone.serial,
                                              "sha256": gone.fingerprint, "file": file}})

    # -- identifiers ------------------------------------------------------------------------

    def set_identifiers(self, actor: str, pid: str, identifiers: Mapping[str, Any], *,
                        remote: str | None = None) -> dict[str, Any]:
        """Replace the lists of ``[identifiers]`` named in ``identifiers`` (``unb`` as
        ``{id, qualifier}`` or ``"ID:QUALIFIER"``; ``gln``, ``vat``, ``siren``, ``siret``,
        ``as2``, ``email``, ``phone`` as strings); the others stay. An empty list removes
        the scheme. Each value may belong to one partner only."""
        new = _identifiers(identifiers, pid)
        if "email" in new:
            self._check_emails(pid, new["email"])

        def edit(raw: dict[str, Any]) -> None:
            idents = raw.setdefault("identifiers", {})
            for scheme, values in new.items():
                _set(idents, scheme, values)
            if not idents:
                raw.pop("identifiers", None)
        return self._change(actor, pid, "partner.identifiers", edit,
                            lambda raw: dict(raw.get("identifiers", {})), remote=remote)

    def add_identifier(self, actor: str, pid: str, scheme: str, value: str,
                       qualifier: str | None = None, *, remote: str | None = None
                       ) -> dict[str, Any]:
        """One more identifier (``scheme`` ``unb`` with its ``qualifier``, or another
        scheme of ``[identifiers]``); nothing changes if the profile lists it already."""
        current = self.get(pid)["identifiers"]
        if scheme == "unb":
            item: Any = {"id": value, "qualifier": qualifier} if qualifier else {"id": value}
            listed = [{k: v for k, v in u.items() if v is not None} for u in current["unb"]]
            values: list[Any] = listed + ([item] if item not in listed else [])
        else:
            values = list(current.get(scheme, [])) if scheme in current else []
            values += [value] if value not in values else []
        return self.set_identifiers(actor, pid, {scheme: values}, remote=remote)

    # -- a channel's own operations ------------------------------------------------------

    def change(self, actor: str, pid: str, action: str, edit: Edit, part: Part, *,
               remote: str | None = None) -> dict[str, Any]:
        """Change the profile of ``pid`` by ``edit`` (given its TOML as a dict, edited in
        place) as every operation here does: validated, written, reloaded, audited as
        ``action`` with ``part`` of it before and after, announced. For a channel's own
        operations (``gateway.channels.<name>.admin``)."""
        return self._change(actor, pid, action, edit, part, remote=remote)

    # -- documents and acknowledgements ---------------------------------------------------

    def set_documents(self, actor: str, pid: str, documents: Sequence[Mapping[str, Any]], *,
                      remote: str | None = None) -> dict[str, Any]:
        """Replace ``[[documents]]`` (type, format, mapping); a named mapping must exist in
        the gateway's mappings and be of the document's format."""
        docs = self._documents(pid, documents)

        def edit(raw: dict[str, Any]) -> None:
            _set(raw, "documents", docs)
        return self._change(actor, pid, "partner.documents", edit,
                            lambda raw: {"documents": raw.get("documents", [])}, remote=remote)

    def _documents(self, pid: str, documents: Sequence[Mapping[str, Any]]
                   ) -> builtins.list[dict[str, Any]]:
        """``[[documents]]`` checked: the model's rules, a named mapping existing and
        reading the document's format."""
        docs: builtins.list[dict[str, Any]] = []
        for i, d in enumerate(documents):
            try:
                model = DocumentSettings.model_validate(dict(d))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                raise Invalid(f"documents[{i}].{where}", err["msg"], partner=pid) from None
            docs.append(model.model_dump(exclude_none=True))
        if any("mapping" in d for d in docs):
            from gateway.formats.mapping import MappingSet

            try:
                mappings = MappingSet.load(Path(self.settings.mappings))
            except EdigwError as exc:
                raise Invalid("documents", f"the mappings cannot be loaded: {exc}",
                              partner=pid) from None
            for i, d in enumerate(docs):
                if "mapping" not in d:
                    continue
                found = mappings.mappings.get(d["mapping"])
                broken = mappings.broken.get(d["mapping"])
                if broken is not None:
                    raise Invalid(f"documents[{i}].mapping", f"mapping {d['mapping']!r} is "
                                  f"disabled: {broken}", partner=pid)
                if found is None:
                    raise Invalid(f"documents[{i}].mapping", f"no mapping {d['mapping']!r} "
                                  f"(known: {', '.join(sorted(mappings.mappings))})",
                                  partner=pid)
                fmt = getattr(found, "format", None)
                if fmt in ("edifact", "xml", "csv") and fmt != d["format"]:
                    raise Invalid(f"documents[{i}].mapping", f"mapping {d['mapping']!r} reads "
                                  f"{fmt}, not {d['format']}", partner=pid)
        return docs

    def set_acknowledgements(self, actor: str, pid: str, *, contrl: str | None = None,
                             email_acknowledgements: bool | None = None,
                             failure_notices: bool | None = None,
                             remote: str | None = None) -> dict[str, Any]:
        """What the partner wants back: a CONTRL (``never``, ``requested``, ``errors``,
        ``always``), a mail acknowledging what it mailed, a mail when it failed."""
        def edit(raw: dict[str, Any]) -> None:
            if contrl is not None:
                raw.setdefault("edifact", {})["contrl"] = contrl
            if email_acknowledgements is not None:
                raw.setdefault("email", {})["acknowledgements"] = email_acknowledgements
            if failure_notices is not None:
                raw.setdefault("email", {})["failure_notices"] = failure_notices

        def part(raw: dict[str, Any]) -> dict[str, Any]:
            return {"contrl": raw.get("edifact", {}).get("contrl"),
                    "email_acknowledgements": raw.get("email", {}).get("acknowledgements"),
                    "failure_notices": raw.get("email", {}).get("failure_notices")}
        return self._change(actor, pid, "partner.acknowledgements", edit, part, remote=remote)

    # -- the machinery --------------------------------------------------------------------

    def _path(self, pid: str) -> Path:
        if not _ID.match(pid):
            raise NotFound(pid)
        return self.folder / f"{pid}.toml"

    def _secret_path(self, pid: str, name: str) -> Path:
        self._path(pid)  # the id names a folder: checked
        return self.secrets_dir / pid / name

    def _change(self, actor: str, pid: str, action: str, edit: Edit, part: Part, *,
                files: Sequence[tuple[Path, bytes, int]] = (), remote: str | None = None,
                changed: bool = False, note: dict[str, Any] | None = None) -> dict[str, Any]:
        """Read, edit, validate, write, reload, audit, announce. Nothing is written (nor
        audited) when the edit changes nothing, unless ``changed`` (a secret rotated in
        place changes no line of the profile)."""
        with _LOCK:
            path = self._path(pid)
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise NotFound(pid) from None
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise Invalid("profile", f"{path} is not valid TOML: {exc}", partner=pid) from None
            new = copy.deepcopy(raw)
            edit(new)
            if new == raw and not changed and not files:
                return self.get(pid)
            directory = self._commit(pid, text, new, files=files)
            after = part(new)
            if note:
                after = {**after, **note} if isinstance(after, dict) else after
            self.audit.record(actor, action, _target(pid), before=part(raw), after=after,
                              remote=remote)
        return self._after(pid, directory)

    def _commit(self, pid: str, old_text: str | None, raw: dict[str, Any], *,
                files: Sequence[tuple[Path, bytes, int]] = ()) -> PartnerDirectory:
        """Validate ``raw`` as the profile of ``pid``, write ``files``, judge the result as
        check-config would (``files`` taken away again on refusal), write the profile and
        reload the directory; on a reload failure the old profile and files are put back."""
        path = self._path(pid)
        try:
            text = tomli_w.dumps(raw)
        except (TypeError, ValueError) as exc:
            raise Invalid("profile", f"cannot be written as TOML: {exc}", partner=pid) from None
        # A value given through the console is taken literally: "${VAR}" in it would be
        # expanded from the gateway's environment and shown back (another partner's secret).
        before = _strings(tomllib.loads(old_text)) if old_text else set()
        for _where, value in sorted(_strings(raw) - before):
            if "${" in value:
                raise Invalid("value", "environment references (${…}) can only be written in "
                              "the profile file, not through the console", partner=pid)
        partner = self._validate(pid, path, raw)
        undo = self._stage(files)
        try:
            self._check_config(pid, partner)
        except BaseException:
            undo()
            raise
        known = {p.file for p in self._directory().problems}
        _write_atomic(path, text.encode("utf-8"), _mode_of(path, 0o644))
        loaded = load_partners(self.folder, self.env)
        # this profile left out, or another one it now clashes with (an identifier taken)
        problem = loaded.problem_of(path) or next(
            (p for p in loaded.problems if p.file not in known), None)
        if problem is None:
            return loaded
        # The profile written does not load with the others: put back what was there.
        refused = problem.error or ConfigError(problem.why, file=str(path))
        if old_text is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomic(path, old_text.encode("utf-8"), _mode_of(path, 0o644))
        undo()
        raise Invalid(refused.key or "profile", str(refused), partner=pid)

    def _stage(self, files: Sequence[tuple[Path, bytes, int]]) -> Callable[[], None]:
        """Write ``files`` (secrets owner-only); return what puts back what was there."""
        kept: list[tuple[Path, bytes | None, int]] = []
        for file, data, mode in files:
            try:
                kept.append((file, file.read_bytes(), _mode_of(file, mode)))
            except FileNotFoundError:
                kept.append((file, None, mode))
            secret = mode == 0o600
            if secret:  # the secrets folder and the partner's folder in it: owner only
                self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                os.chmod(self.secrets_dir, 0o700)
            _write_atomic(file, data, mode, folder_mode=0o700 if secret else 0o755)

        def undo() -> None:
            for file, old, mode in reversed(kept):
                if old is None:
                    file.unlink(missing_ok=True)
                else:
                    _write_atomic(file, old, mode)
        return undo

    def _check_config(self, pid: str, partner: Partner) -> None:
        """CheckFailed when ``edigw check-config`` would find problems with ``partner`` in
        place of the profile of ``pid`` that it does not find today."""
        from gateway.channels.checks import added_problems

        current = self._directory()
        after = PartnerDirectory([p for p in current if p.id != pid] + [partner])
        added = added_problems(self.settings, current, after)
        if added:
            raise CheckFailed(added, partner=pid)

    def _validate(self, pid: str, path: Path, raw: dict[str, Any]) -> Partner:
        """``raw`` as ``load_partners`` would judge it, against the other profiles."""
        try:
            data = expand(copy.deepcopy(raw), self.env, str(path), "")
            data["source"] = str(path)
            partner: Partner = _validate(Partner, data, str(path))
        except ConfigError as exc:
            raise Invalid(exc.key or "profile", exc.reason, partner=pid) from None
        if partner.id != pid:
            raise Invalid("id", "must equal the file name", partner=pid)
        mine_ids = _unique_ids(partner)
        mine_unb = {(u.id, u.qualifier) for u in partner.identifiers.unb}
        for other in self._directory():
            if other.id == pid:
                continue
            for scheme, value in sorted(mine_ids & _unique_ids(other)):
                raise Conflict(scheme, value, other.id, partner=pid)
            for ident in other.identifiers.unb:
                if (ident.id, ident.qualifier) in mine_unb:
                    raise Conflict("unb", ident.id, other.id, partner=pid)
        return partner

    def _after(self, pid: str, directory: PartnerDirectory) -> dict[str, Any]:
        if self.on_change is not None:
            self.on_change(directory)
        partner = directory.get(pid)
        assert partner is not None  # just written and reloaded
        return self._shown(partner)


# -- helpers ---------------------------------------------------------------------------------

def _target(pid: str) -> str:
    return f"partner:{pid}"


def _set(table: dict[str, Any], key: str, value: list[Any]) -> None:
    """Set a list, or drop the key when it is empty (the default)."""
    if value:
        table[key] = value
    else:
        table.pop(key, None)


def _state(raw: dict[str, Any]) -> dict[str, Any]:
    return {"state": raw.get("state", "live")}


def _enabled(raw: dict[str, Any]) -> dict[str, Any]:
    return {"enabled": raw.get("enabled", True)}


def _sftp_auth(raw: dict[str, Any]) -> dict[str, Any]:
    sftp = raw.get("sftp", {})
    keys = ("password", "password_file", "key_file", "key_passphrase")
    return {k: sftp.get(k) for k in keys}


def _sftp(raw: dict[str, Any], pid: str) -> dict[str, Any]:
    sftp = raw.get("sftp")
    if not isinstance(sftp, dict):
        raise Invalid("sftp", "the profile has no [sftp] section (host, user): add it to the "
                              "profile first", partner=pid)
    return sftp


#: The schemes of ``[identifiers]`` besides ``unb``.
SCHEMES = ("gln", "vat", "siren", "siret", "as2", "email", "phone", "iso6523")


def _identifiers(given: Mapping[str, Any], pid: str) -> dict[str, list[Any]]:
    """``[identifiers]`` lists as given (``unb`` items ``{id, qualifier}`` or ``ID:QUAL``),
    checked by the profile model, blanks dropped, repeats once."""
    out: dict[str, list[Any]] = {}
    for scheme, values in given.items():
        if scheme != "unb" and scheme not in SCHEMES:
            raise Invalid(f"identifiers.{scheme}", "not an identifier scheme: one of unb, "
                          + ", ".join(SCHEMES), partner=pid)
        if isinstance(values, (str, dict)):
            values = [values]
        items: list[Any] = []
        for v in values or []:
            if scheme == "unb":
                if isinstance(v, str):
                    ident, _, qual = v.strip().partition(":")
                    v = {"id": ident.strip(), "qualifier": qual.strip() or None}
                v = {k: str(x).strip() for k, x in dict(v).items() if x not in (None, "")}
                if not v.get("id"):
                    continue
            else:
                v = str(v).strip()
                if not v:
                    continue
            if v not in items:
                items.append(v)
        if scheme == "email":
            items = _emails(items, "identifiers.email") if items else []
        out[scheme] = items
    try:
        Identifiers.model_validate(out)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise Invalid(f"identifiers.{where}", f"{err['msg']} (value {err.get('input')!r})",
                      partner=pid) from None
    return out


def _emails(values: Sequence[str], field: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        v = v.strip()
        if not _EMAIL.match(v):
            raise Invalid(field, f"{v!r} is not a mail address")
        if v.lower() not in {o.lower() for o in out}:
            out.append(v)
    return out


def _private_key(data: str | bytes, passphrase: str | None, pid: str) -> tuple[bytes, str, str]:
    """The key as unencrypted OpenSSH bytes, its public line and fingerprint; Invalid when
    it is not a private key paramiko can use (or the passphrase is wrong or missing)."""
    from gateway.channels.sftp.hostkey import fingerprint

    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    password = passphrase.encode("utf-8") if passphrase else None
    key: Any = None
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            key = loader(raw, password)
        except TypeError:  # encrypted without a passphrase, or a passphrase for a clear key
            if password is None:
                raise Invalid("passphrase", "the key is encrypted: give its passphrase",
                              partner=pid) from None
            with contextlib.suppress(TypeError, ValueError, UnsupportedAlgorithm):
                key = loader(raw, None)
        except (ValueError, UnsupportedAlgorithm):
            continue
        if key is not None:
            break
    classes: list[tuple[type, type[paramiko.PKey]]] = [
        (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key), (rsa.RSAPrivateKey, paramiko.RSAKey),
        (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey)]
    cls = next((c for t, c in classes if isinstance(key, t)), None)
    if key is None or cls is None:
        raise Invalid("private_key", "not an RSA, ECDSA or Ed25519 private key (OpenSSH or "
                                     "PEM), or the passphrase is wrong", partner=pid)
    stored = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                               serialization.NoEncryption())
    try:
        pkey = cls.from_private_key(io.StringIO(stored.decode("ascii")))
    except (paramiko.SSHException, ValueError) as exc:
        raise Invalid("private_key", f"paramiko cannot use it: {exc}", partner=pid) from None
    return stored, f"{pkey.get_name()} {pkey.get_base64()}", fingerprint(pkey)


def _certificate(data: bytes, pid: str) -> x509.Certificate:
    """A certificate from PEM or DER; Invalid for anything else, for a bundle holding a
    private key (never ours to keep), and for an expired certificate."""
    if b"PRIVATE KEY-----" in data:
        raise Invalid("certificate", "holds a private key: upload the partner's certificate "
                                     "only", partner=pid)
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN CERTIFICATE-----" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise Invalid("certificate", "not a PEM or DER X.509 certificate",
                      partner=pid) from None
    now = clock.now()
    if cert.not_valid_after_utc < now:
        raise Invalid("certificate", f"expired on {cert.not_valid_after_utc:%Y-%m-%d}",
                      partner=pid)
    if cert.not_valid_before_utc > now + dt.timedelta(days=1):
        raise Invalid("certificate", f"not valid before {cert.not_valid_before_utc:%Y-%m-%d}",
                      partner=pid)
    return cert


def _mode_of(path: Path, default: int) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return default


def _strings(value: Any, where: str = "") -> set[tuple[str, str]]:
    """Every string of a TOML document with where it stands (``email.reply_to[0]``)."""
    if isinstance(value, str):
        return {(where, value)}
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    found: set[tuple[str, str]] = set()
    for key, v in items:
        found |= _strings(v, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
    return found


def _write_atomic(path: Path, data: bytes, mode: int, *, folder_mode: int = 0o755) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=folder_mode)
    if folder_mode == 0o700:
        os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
