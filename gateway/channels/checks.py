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


def check_config(settings: GatewaySettings, directory: PartnerDirectory, *,
                 senders: list[str] | None = None) -> ConfigCheck:
    """Every problem ``edigw check-config`` reports for ``settings`` with the profiles of
    ``directory``: mappings named by profiles, each channel's problems, and what partners
    are to be sent (``senders``: the channels that can send, when known already). Raises
    what loading the inbound mappings raises (a broken mapping)."""
    mapping_set, outbound, outbound_error = _mappings(Path(settings.mappings))
    found = ConfigCheck(mappings=mapping_set, outbound=outbound)
    for p in directory:
        for d in p.documents:
            if d.mapping and d.mapping not in mapping_set.mappings:
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
    """The inbound mappings (raising when they cannot be loaded), the outbound ones (None
    and why when they cannot), read again only when a file under ``root`` changed."""
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
