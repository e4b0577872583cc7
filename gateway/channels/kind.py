"""What a channel is to the rest of the gateway: a ``ChannelKind``.

Each channel package (``gateway/channels/<name>/``) exports one ``CHANNEL: ChannelKind`` that
says everything the composition root, the command line and the console need to know of it:

- ``name``: as partner profiles list it (``channels = ["sftp"]``);
- ``section``: the model of its keys of ``gateway.toml`` (``gateway.channels.sections``);
- ``start``: what ``edigw serve`` runs for it, given a ``ChannelContext``: loops, periodic
  jobs, HTTP endpoints, hooks after processing (a ``ChannelRun``);
- ``configured``: each configured instance of it (an inbox, a mailbox, a webhook), with where
  it is, for ``edigw channels`` and its health records;
- ``summary``: the lines ``edigw config check`` prints for it;
- ``listens``: its instances are HTTP endpoints, which record no health until called;
- ``transport``: what it recorded about one transmission (``edigw show``), if anything;
- ``problems``: what ``edigw check-config`` finds wrong in its settings; ``shown``: its
  ``transport`` record as ``edigw show`` prints it (a title, labelled values);
- ``partner_api``: its routes of the partner administration API (a FastAPI ``APIRouter``
  mounted under ``/partners``), if it has any;
- ``partner_form``: what the console's ``POST /partners/{id}/<name>`` form does, if the
  channel has a form on the partner page;
- ``sender``: what delivers documents to partners whose ``[outbound] channel`` it is (a
  ``channels.outbound.Sender``), made from the gateway's settings, or None when they do not
  configure it.

A channel's console fragments live in its folder's ``templates/`` (``transport.html``, shown
on a transmission's page with its ``transport`` record as ``record``; ``partner.html``, its
administration form on a partner's page): the web finds them there by the channel's name.

The heavy modules of a channel (paramiko, pyas2lib, aioimaplib …) are imported by its
``start``, never by its package: the registry can be read without them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from gateway.channels.email.mailer import Mailer
    from gateway.channels.outbound import Sender
    from gateway.channels.sections import StrictModel
    from gateway.config import GatewaySettings, Partner, PartnerDirectory
    from gateway.core.pipeline import Outcome
    from gateway.core.ports import Receipt, Receiver
    from gateway.http.server import Endpoint
    from gateway.store.archive import Archive
    from gateway.store.channels import ChannelRecords
    from gateway.store.db import Store
    from gateway.web.partners_admin import PartnerAdmin


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What a channel's ``start`` is given: the settings, the live partner directory, where
    to receive into, and the gateway's shared services."""

    settings: GatewaySettings
    partners: PartnerDirectory
    receiver: Receiver
    store: Store
    archive: Archive
    records: ChannelRecords
    #: Called with the receipts that need processing, from any thread.
    on_received: Callable[[list[Receipt]], None]
    #: The gateway's outgoing mail (``[smtp]``), when configured.
    mailer: Mailer | None = None
    #: The HTTP server runs: endpoints are wanted.
    listening: bool = True
    #: This ``serve`` instance's id (``instances.id``), when several may share the store.
    instance_id: str | None = None


#: A loop run under supervision until the stop event is set.
Loop = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class ChannelRun:
    """What ``start`` made: named loops (supervised: a crash is logged and the loop starts
    again), named periodic jobs with their period in seconds, HTTP endpoints by path, hooks
    given the outcomes of each processing batch, and what to close at shutdown.

    Where several instances share a store, each loop and periodic job runs on one instance
    at a time (under a lease named after it), except those named in ``everywhere``: work
    each instance may do side by side (a shared inbox whose files are claimed one by one,
    replies to what this instance received)."""

    loops: list[tuple[str, Loop]] = field(default_factory=list)
    periodic: list[tuple[str, Callable[[], object], float]] = field(default_factory=list)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    everywhere: set[str] = field(default_factory=set)
    after_processing: list[Callable[[Sequence[Outcome]], None]] = field(default_factory=list)
    #: The channel cannot work without the HTTP server: failing to listen stops start-up.
    needs_http: bool = False
    close: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ConfiguredChannel:
    """One configured instance of a channel: its health record's name, its kind, the partner
    it serves (if one), and where it is."""

    channel: str
    kind: str
    partner_id: str | None
    where: str


@dataclass(frozen=True, slots=True)
class PartnerFormPost:
    """A channel's administration form posted on a partner's console page: who posts it,
    for which partner (``current``: its profile as loaded, if it exists), the posted fields
    and the service that makes the audited change."""

    admin: PartnerAdmin
    actor: str
    partner_id: str
    current: Partner | None
    fields: Mapping[str, str]
    remote: str | None = None

    def field(self, name: str) -> str:
        """The posted field ``name``, stripped ("" when absent)."""
        return self.fields.get(name, "").strip()


def _none(settings: GatewaySettings, partners: PartnerDirectory) -> list[Any]:
    return []


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """One kind of channel (see the module's docstring)."""

    name: str
    section: type[StrictModel] | None = None
    start: Callable[[ChannelContext], ChannelRun] | None = None
    configured: Callable[[GatewaySettings, PartnerDirectory],
                         list[ConfiguredChannel]] = _none
    summary: Callable[[GatewaySettings, PartnerDirectory], list[str]] = _none
    listens: bool = False
    transport: Callable[[Store, str], Mapping[str, Any] | None] | None = None
    problems: Callable[[GatewaySettings, PartnerDirectory], list[str]] = _none
    shown: Callable[[Mapping[str, Any]], tuple[str, list[tuple[str, object]]]] | None = None
    partner_api: Callable[[], APIRouter] | None = None
    partner_form: Callable[[PartnerFormPost], None] | None = None
    sender: Callable[[GatewaySettings], Sender | None] | None = None
