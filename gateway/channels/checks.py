"""What ``edigw check-config`` refuses in a set of partner profiles, as one function: the
command prints it, and the console's partner administration runs it on a profile before
writing it (``gateway.web.partners_admin``), so that no change made while ``serve`` runs
leaves a configuration the next start would refuse.

The mappings are read once per content of the mappings folder (the same files, the same
sizes and modification times: the same mappings), since a console change checks the whole
configuration twice (before and after).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.channels.registry import CHANNELS
from gateway.core.errors import EdigwError

if TYPE_CHECKING:
    from gateway.config import GatewaySettings, PartnerDirectory
    from gateway.formats.mapping import MappingSet
    from gateway.formats.render import OutboundMappings


@dataclass(slots=True)
class ConfigCheck:
    """What was found: the problems (one line each, naming file and key), the channels
    this gateway can send on, and the mappings read."""

    problems: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    mappings: MappingSet | None = None
    outbound: OutboundMappings | None = None
    #: The mappings and partners disabled, each with its file and reason (in ``problems``
    #: too).
    disabled: list[Disabled] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Disabled:
    """A mapping or a partner that is not in use, and why: its file did not load, or (a
    partner) its profile names a mapping that did not. Everything else runs."""

    kind: str  # "mapping", "outbound mapping" or "partner"
    name: str  # its id (a file's name when the file says none)
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind} {self.name} disabled: {self.reason}"

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "file": self.file, "reason": self.reason}


def disabled(directory: PartnerDirectory, mapping_set: MappingSet,
             outbound: OutboundMappings | None = None) -> list[Disabled]:
    """What is disabled by the configuration as loaded: every mapping file left out (with
    its line; outbound ones too), every partner profile left out, every partner whose
    profile names a mapping left out (``core.lifecycle.disabled_by`` keeps its files
    back)."""
    found = [Disabled(kind, p.mapping_id or Path(p.file).stem, p.file,
                      (f"line {p.line}: " if p.line is not None else "") + p.reason)
             for kind, problems in (("mapping", mapping_set.problems),
                                    ("outbound mapping", outbound.problems if outbound else []))
             for p in problems]
    found += [Disabled("partner", p.partner_id, p.file, p.reason) for p in directory.problems]
    for partner in directory:
        for name in partner.mappings_named():
            broken = mapping_set.broken.get(name)
            if broken is not None:
                found.append(Disabled("partner", partner.id, partner.source,
                                      f"its mapping {name!r} did not load ({broken})"))
                break
    return found


def disabled_now(settings: GatewaySettings, directory: PartnerDirectory) -> list[Disabled]:
    """``disabled`` for the mappings folder as it is now (read again only when it changed)."""
    inbound, outbound, _why = _mappings(Path(settings.mappings))
    return disabled(directory, inbound, outbound)


def check_config(settings: GatewaySettings, directory: PartnerDirectory, *,
                 senders: list[str] | None = None) -> ConfigCheck:
    """Every problem ``edigw check-config`` reports for ``settings`` with the profiles of
    ``directory``: mappings named by profiles, each channel's problems, and what partners
    are to be sent (``senders``: the channels that can send, when known already). A
    mapping or profile that did not load is a problem (``disabled``), as is a partner
    naming such a mapping."""
    mapping_set, outbound, outbound_error = _mappings(Path(settings.mappings))
    found = ConfigCheck(mappings=mapping_set, outbound=outbound)
    found.disabled = disabled(directory, mapping_set, outbound)
    found.problems += [str(d) for d in found.disabled]
    for p in directory:
        for d in p.documents:
            if (d.mapping and d.mapping not in mapping_set.mappings
                    and d.mapping not in mapping_set.broken):
                found.problems.append(f"{p.source}: documents: mapping {d.mapping!r} does not "
                                      f"exist under {settings.mappings}")
    for kind in CHANNELS:
        found.problems += kind.problems(settings, directory)
    if outbound is None:
        found.problems.append(f"outbound mappings: {outbound_error}")
        return found
    found.senders = _senders(settings, found.problems) if senders is None else senders
    from gateway.channels.intake import outbound_problems

    found.problems += outbound_problems(directory, outbound,
                                        sender_id=settings.outbound.sender_id,
                                        senders=found.senders)
    return found


def added_problems(settings: GatewaySettings, before: PartnerDirectory,
                   after: PartnerDirectory) -> list[str]:
    """The problems ``check_config`` finds with the profiles of ``after`` and not with
    those of ``before`` (a mapping that cannot be loaded is one of them, in both)."""
    try:
        first = check_config(settings, before)
        known = set(first.problems)
        return [line for line in check_config(settings, after, senders=first.senders).problems
                if line not in known]
    except EdigwError:
        return []  # the mappings cannot be loaded, before as after: nothing this change adds


def _senders(settings: GatewaySettings, problems: list[str]) -> list[str]:
    """The channels that can send: the folder always, the others when configured (a sender
    is made only to be counted: AS2 loads our keys, a bad key is a problem here too)."""
    senders = ["folder"]
    for kind in CHANNELS:
        if kind.sender is None:
            continue
        try:
            made = kind.sender(settings)
        except EdigwError as exc:
            problems.append(f"{kind.name}: cannot send: {exc}")
            continue
        if made is not None:
            senders.append(kind.name)
            closer = getattr(made, "close", None)
            if closer is not None:
                closer()
    return senders


_LOCK = threading.Lock()
_CACHE: dict[Path, tuple[tuple[tuple[str, int, int], ...],
                         tuple[MappingSet, OutboundMappings | None, str | None]]] = {}


def _mappings(root: Path) -> tuple[MappingSet, OutboundMappings | None, str | None]:
    """The inbound mappings (those that load; the others in its ``problems``), the outbound
    ones (None and why when they cannot), read again only when a file under ``root``
    changed."""
    from gateway.formats.mapping import MappingSet
    from gateway.formats.render import OutboundMappings

    stamp = tuple(sorted((str(p), st.st_mtime_ns, st.st_size) for p in root.rglob("*")
                         if p.is_file() for st in (p.stat(),))) if root.is_dir() else ()
    with _LOCK:
        kept = _CACHE.get(root)
        if kept is not None and kept[0] == stamp:
            return kept[1]
    inbound = MappingSet.load(root)
    outbound: OutboundMappings | None
    try:
        outbound, why = OutboundMappings.load(root), None
    except EdigwError as exc:
        outbound, why = None, str(exc)
    with _LOCK:
        _CACHE[root] = (stamp, (inbound, outbound, why))
    return inbound, outbound, why
