"""Quarantine to partner in one step: the unknown senders of quarantined files, and making
one of them a partner (a new profile, or one more identifier of an existing one) before
processing again every file it sent, for the console, the API and ``edigw partners adopt``.

The profile is changed through ``PartnerAdmin`` (validated as check-config would, written
atomically, audited, handed to the running gateway); each file is then replayed as
``core.reprocess`` replays it (a new attempt linked to the quarantined one). A mail whose
From address made it unknown is attributed to the partner first, as the mail channel would
have at receive time: its attachment may name no identifier of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import ReprocessError
from gateway.core.ports import StorePort
from gateway.core.reprocess import Reprocessed, reprocess
from gateway.core.senders import UnknownSender, senders_in
from gateway.store.db import Store
from gateway.store.quarantine import attribute, quarantine_reasons, quarantined_with
from gateway.web.partners_admin import Invalid, PartnerAdmin, PartnerAdminError

#: File names shown per sender.
SAMPLES = 3


class UnknownSenderKey(PartnerAdminError):
    """No waiting quarantined file was sent by ``key`` (404)."""

    def __init__(self, key: str, why: str = "") -> None:
        self.key = key
        super().__init__(why or f"no quarantined file waits from sender {key!r}")


@dataclass(frozen=True, slots=True)
class SenderGroup:
    """An unknown sender and its waiting quarantined files."""

    sender: UnknownSender
    also: tuple[UnknownSender, ...]  # other identities its files named with it
    count: int
    first_at: Any
    last_at: Any
    reasons: tuple[str, ...]
    samples: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.sender.key

    @property
    def adoptable(self) -> str | None:
        """None, or why it cannot extend an existing partner (only a new one)."""
        return ("a channel names this partner id: create the partner with it"
                if self.sender.scheme == "partner" else None)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "scheme": self.sender.scheme, "value": self.sender.value,
                "qualifier": self.sender.qualifier, "label": self.sender.label,
                "also": [a.key for a in self.also], "count": self.count,
                "first_at": self.first_at.isoformat(), "last_at": self.last_at.isoformat(),
                "samples": list(self.samples)}


def unknown_senders(store: Store, *, samples: bool = True) -> list[SenderGroup]:
    """Every unknown sender with waiting quarantined files, the latest first."""
    groups: dict[str, dict[str, Any]] = {}
    for g in quarantine_reasons(store):
        named = senders_in(g.reason)
        if not named:
            continue
        slot = groups.setdefault(named[0].key, {
            "sender": named[0], "also": [], "count": 0, "first_at": g.first_at,
            "last_at": g.last_at, "reasons": []})
        slot["count"] += g.count
        slot["first_at"] = min(slot["first_at"], g.first_at)
        slot["last_at"] = max(slot["last_at"], g.last_at)
        slot["reasons"].append(g.reason)
        slot["also"] += [n for n in named[1:] if n not in slot["also"]]
    out = []
    for slot in groups.values():
        names: tuple[str, ...] = ()
        if samples:
            files = quarantined_with(store, slot["reasons"], limit=SAMPLES)
            names = tuple(f.filename or f.id for f in files)
        out.append(SenderGroup(slot["sender"], tuple(slot["also"]), slot["count"],
                               slot["first_at"], slot["last_at"], tuple(slot["reasons"]),
                               names))
    return sorted(out, key=lambda g: g.last_at, reverse=True)


def sender_group(store: Store, key: str) -> SenderGroup:
    """The group of ``key``; UnknownSenderKey when none waits (or the key is malformed)."""
    try:
        wanted = UnknownSender.from_key(key).key
    except ValueError as exc:
        raise UnknownSenderKey(key, str(exc)) from None
    found = next((g for g in unknown_senders(store) if g.key == wanted), None)
    if found is None:
        raise UnknownSenderKey(key)
    return found


class Replaying(Protocol):
    """What adopting needs of the gateway: what ``core.reprocess`` needs."""

    @property
    def store(self) -> StorePort: ...

    @property
    def pipeline(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class NewPartner:
    """The partner to create for the sender: id, name, and optionally its onboarding state
    (live or test: a draft partner's files would be held again), channels, documents."""

    id: str
    name: str
    state: str = "live"
    channels: Sequence[str] = ("folder",)
    documents: Sequence[Mapping[str, Any]] = ()


@dataclass(slots=True)
class Adoption:
    """What adopting did: the partner (created or extended), the identifiers added, and
    each file replayed (``failed`` the ones that could not be)."""

    sender: str
    partner_id: str
    created: bool
    identifiers: list[str]
    reprocessed: list[Reprocessed] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.reprocessed))

    def as_dict(self) -> dict[str, Any]:
        return {"sender": self.sender, "partner_id": self.partner_id, "created": self.created,
                "identifiers": self.identifiers, "reprocessed": len(self.reprocessed),
                "outcomes": self.outcomes,
                "attempts": [{"transmission_id": r.transmission_id,
                              "attempt_id": r.attempt_id, "status": r.status,
                              "partner_id": r.partner_id, "documents": r.documents,
                              "reason": r.reason} for r in self.reprocessed],
                "failed": [{"transmission_id": t, "reason": why} for t, why in self.failed]}


def _identifiers(group: SenderGroup) -> dict[str, list[Any]]:
    """The ``[identifiers]`` that make the sender's files the partner's."""
    out: dict[str, list[Any]] = {}
    for who in (group.sender, *group.also):
        if who.scheme == "partner":
            continue
        if who.scheme == "unb":
            item = {"id": who.value} | ({"qualifier": who.qualifier} if who.qualifier else {})
            out.setdefault("unb", []).append(item)
        else:
            out.setdefault(who.scheme, []).append(who.value)
    return out


def adopt(gateway: Replaying, admin: PartnerAdmin, actor: str, key: str, *,
          new: NewPartner | None = None, extend: str | None = None,
          remote: str | None = None) -> Adoption:
    """Make the sender ``key`` a partner (``new``, or one more identity of partner
    ``extend``), then replay every waiting quarantined file it sent. Refusals
    (PartnerAdminError: UnknownSenderKey, Invalid, Conflict, CheckFailed, NotFound) leave
    the profiles and the files as they were."""
    if (new is None) == (extend is None):
        raise Invalid("partner", "give either a new partner or the partner to extend")
    if new is not None and new.state not in ("live", "test"):
        raise Invalid("state", f"a partner in state {new.state!r} would have its files "
                      "held again: live or test")
    store: Store = gateway.store  # type: ignore[assignment]
    group = sender_group(store, key)
    idents = _identifiers(group)
    shown = [f"{s}:{v if isinstance(v, str) else v['id'] + (':' + v['qualifier'] if 'qualifier' in v else '')}"
             for s, vs in idents.items() for v in vs]
    if new is not None:
        if group.sender.scheme == "partner" and new.id != group.sender.value:
            raise Invalid("id", f"the channel names partner {group.sender.value!r}: the new "
                          "partner must have that id")
        admin.create(actor, new.id, new.name, identifiers=idents, channels=new.channels,
                     documents=new.documents, state=new.state, remote=remote)
        pid, created = new.id, True
    else:
        assert extend is not None
        if group.adoptable is not None:
            raise Invalid("partner", group.adoptable)
        admin.get(extend)  # NotFound first
        current = admin.get(extend)["identifiers"]
        merged: dict[str, list[Any]] = {}
        for scheme, values in idents.items():
            have = [{k: v for k, v in u.items() if v is not None} for u in current["unb"]] \
                if scheme == "unb" else list(current.get(scheme) or [])
            merged[scheme] = have + [v for v in values if v not in have]
        admin.set_identifiers(actor, extend, merged, remote=remote)
        pid, created = extend, False
    done = Adoption(sender=group.key, partner_id=pid, created=created, identifiers=shown)
    files = quarantined_with(store, group.reasons)
    if group.sender.scheme == "email":
        attribute(store, [f.id for f in files], pid)
    why = f"sender {group.sender.label} adopted as partner {pid}"
    for f in files:
        try:
            done.reprocessed.append(reprocess(gateway, f.id, by=actor, reason=why))
        except ReprocessError as exc:
            done.failed.append((f.id, str(exc)))
    admin.audit.record(actor, "partner.adopt", f"partner:{pid}",
                       after={"sender": group.key, "created": created,
                              "identifiers": shown, "reprocessed": len(done.reprocessed),
                              "outcomes": done.outcomes, "failed": len(done.failed)},
                       remote=remote)
    return done
