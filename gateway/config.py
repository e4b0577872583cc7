"""Gateway settings (``config/gateway.toml``) and partner profiles (``config/partners/*.toml``).

Loading is strict: an unknown key or a bad value stops start-up with a ``ConfigError`` naming
the file, the key and the value. Any string value may be written ``${NAME}`` or
``${NAME:-default}`` to come from the environment; ``EDIGW_STORE_URL`` and ``EDIGW_BROKER_URL``
(or ``EDIGW_BROKER_URLS``, a cluster's nodes comma-separated; it wins when both are set)
override the store and broker URLs whatever the file says. Without a settings file the
embedded defaults apply: a SQLite store, archive and inbox under ``var/``, the broker at
localhost.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# PartnerAs2, PartnerEmail, SftpInbound and SftpSettings are the channels' sections of a
# partner profile: composed into ``Partner``, and importable from here as before.
from gateway.channels.as2.settings import PartnerAs2 as PartnerAs2
from gateway.channels.email.settings import PartnerEmail as PartnerEmail
from gateway.channels.registry import CHANNEL_NAMES, ChannelSections
from gateway.channels.sections import ID_PATTERN, StrictModel
from gateway.channels.sftp.settings import SftpInbound as SftpInbound
from gateway.channels.sftp.settings import SftpSettings as SftpSettings
from gateway.config_file import (
    ARCHIVE,
    ENV_KEYS,
    PARTNERS,
    STORE_URL,
    STORE_URL_PATTERN,
    TIMEZONE,
    read_raw,
    read_toml,
    rebased_path,
    rebased_store_url,
)
from gateway.config_file import DEFAULT_CONFIG as DEFAULT_CONFIG  # importable from here
from gateway.core import iso6523
from gateway.core.errors import ConfigError
from gateway.core.urls import mask_url as mask_url  # re-exported, as before
from gateway.formats.registry import PROFILE_FORMATS
from gateway.shipped import shipped


def _log() -> Any:
    """The config's logger (structlog is imported when a reload has something to say, not by
    every ``edigw`` command that reads the settings)."""
    from gateway.logs import logger

    return logger("edigw.config")

M = TypeVar("M", bound=BaseModel)
_ID = ID_PATTERN


if TYPE_CHECKING:
    ChannelName = str
    FormatName = str
else:  # the channels and formats of the registries, checked as Literals (their messages
    # list them)
    ChannelName = Literal[CHANNEL_NAMES]
    FormatName = Literal[PROFILE_FORMATS]


class StoreSettings(StrictModel):
    url: str = STORE_URL

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not STORE_URL_PATTERN.match(v):
            raise ValueError("store url must start with sqlite:// or postgresql://")
        return v


class QueueSettings(StrictModel):
    name: Annotated[str, Field(min_length=1)]
    bindings: list[str] = Field(min_length=1)


class BrokerSettings(StrictModel):
    """``[broker]``: one broker (``url``) or the nodes of a cluster (``urls``, tried in turn at
    each (re)connection; ``url`` is then the first of them), not both."""

    url: str = "amqp://guest:guest@localhost:5672/%2F"
    #: The nodes of a RabbitMQ cluster; ``EDIGW_BROKER_URLS`` (comma-separated) overrides it.
    #: Given as a list, or one comma-separated string. Without it: ``[url]``.
    urls: list[str] = Field(default_factory=list)
    #: The type of every queue edigw declares (documents, dead letters, ERP acks): quorum
    #: (replicated on a cluster; what edigw always declared) or classic. An existing queue
    #: keeps its type: declaring it with the other one fails (PRECONDITION_FAILED).
    queue_type: Literal["quorum", "classic"] = "quorum"
    exchange: str = "edi.documents"
    dead_letter_exchange: str = "edi.documents.dlx"
    dead_letter_queue: str = "erp.orders.dead"
    #: Where the ERP hands edigw documents for partners (routing key <doctype>.<partner>),
    #: the quorum queue edigw consumes, and where refused ones go with their reason.
    outbound_exchange: str = Field(default="edi.outbound", min_length=1, max_length=255)
    outbound_queue: str = Field(default="edigw.outbound", min_length=1, max_length=255)
    outbound_dead_exchange: str = Field(default="edi.outbound.dead", min_length=1,
                                        max_length=255)
    outbound_dead_queue: str = Field(default="edigw.outbound.dead", min_length=1,
                                     max_length=255)
    queues: list[QueueSettings] = Field(default_factory=lambda: [
        QueueSettings(name="erp.orders", bindings=["order.#"]),
        QueueSettings(name="erp.price-lists", bindings=["price-list.#"]),
        QueueSettings(name="erp.invoices", bindings=["invoice.#"])])
    confirm_window: int = Field(default=256, ge=1, le=65535)
    batch: int = Field(default=500, ge=1, le=10000)
    retry_initial: float = Field(default=0.5, gt=0)
    retry_max: float = Field(default=30.0, gt=0)
    #: AMQP heartbeat timeout (s) on every connection; a connection silent for two of them
    #: makes /readyz answer 503.
    heartbeat: int = Field(default=30, ge=1, le=3600)
    #: Seconds the outbox publisher waits for a basic.ack while messages are unconfirmed
    #: before it reconnects (to the next node of a cluster) and publishes them again.
    confirm_timeout: float = Field(default=30.0, gt=0)
    #: No message is published larger than this: a larger price list goes out in parts.
    max_message_bytes: int = Field(default=1024 * 1024, ge=4096)
    #: The queue documents of partners in test go to (routing key ``test.<doctype>.<partner>``):
    #: always declared, bound with ``test.#`` on the documents exchange, so that a test file
    #: never reaches the production queues whatever ``queues`` binds.
    test_queue: str = Field(default="erp.test", min_length=1, max_length=255)

    @model_validator(mode="before")
    @classmethod
    def _url_or_urls(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "urls" not in data:
            return {**data, "urls": [data.get("url", cls.model_fields["url"].default)]}
        urls = data["urls"]
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if isinstance(urls, list) and urls and isinstance(urls[0], str):
            if data.get("url", urls[0]) != urls[0]:  # the same first node: a dumped model
                raise ValueError("give url (one broker) or urls (the nodes of a cluster), "
                                 "not both")
            return {**data, "urls": urls, "url": urls[0]}
        if isinstance(urls, list) and not urls:
            raise ValueError("urls must name at least one broker node")
        return data

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^amqps?://", v):
            raise ValueError("broker url must start with amqp:// or amqps://")
        return v

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^amqps?://", url):
                raise ValueError(f"broker url must start with amqp:// or amqps://, not "
                                 f"{mask_url(url)!r}")
        if len(set(v)) < len(v):
            raise ValueError("a broker node is named twice")
        return v


class ArchiveSettings(StrictModel):
    path: Path = ARCHIVE
    fsync: bool = True


class ProcessingSettings(StrictModel):
    """How payloads are processed once received."""

    #: Payloads larger than this (bytes) are read and mapped as a stream, memory flat.
    stream_above: int = Field(default=16 * 1024 * 1024, ge=1)
    #: Seconds one transmission may take to be read and mapped; past it, that transmission
    #: fails (stage "process") and the others go on. 0: no limit.
    time_limit: float = Field(default=120.0, ge=0)
    #: A transmission whose processing started this many times without finishing (the
    #: process crashed or was killed on it) is marked FAILED instead of tried again.
    max_attempts: int = Field(default=3, ge=1, le=100)
    #: Processing counts as stalled (/readyz 503, a "processing-stalled" alert) when a
    #: transmission has waited RECEIVED this long (s) and nothing was processed meanwhile.
    stalled_after: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _stalled_after_the_time_limit(self) -> ProcessingSettings:
        if self.time_limit and self.stalled_after <= self.time_limit:
            raise ValueError(f"stalled_after ({self.stalled_after:g} s) must be longer than "
                             f"time_limit ({self.time_limit:g} s): one payload may take "
                             "that long without processing being stalled")
        return self


class LogSettings(StrictModel):
    """Log lines, always on stderr (stdout is the commands' own output): ``console`` lines
    for people or ``json`` lines for a collector. ``level`` is ``serve``'s; the other
    commands log warnings and errors only (or less, when ``level`` is higher)."""

    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"


class OutboundSettings(StrictModel):
    """Where files for partners (CONTRL …) are written when their profile names no folder."""

    path: Path = Path("var/outbound")
    max_attempts: int = Field(default=10, ge=1, le=1000)
    #: A failed delivery is tried again after ``retry_initial`` seconds, doubled after each
    #: failure up to ``retry_max``.
    retry_initial: float = Field(default=30.0, gt=0, le=86400)
    retry_max: float = Field(default=3600.0, gt=0, le=7 * 86400)
    #: Our own identity in the interchanges we send (UNB sender): a GLN with qualifier 14
    #: by default. Required before EDIFACT is sent.
    sender_id: str | None = Field(default=None, min_length=1, max_length=35)
    sender_qualifier: str | None = Field(default="14", max_length=4)
    #: A price list from the ERP larger than this (bytes of JSON) is read item by item and
    #: rendered through a spool file: memory stays flat whatever its size.
    stream_above: int = Field(default=4 << 20, ge=64 << 10, le=1 << 40)


class HttpSettings(StrictModel):
    """The gateway's HTTP server (``edigw serve``): health, the console and the endpoints
    channels contribute."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    #: The URL partners and providers reach this server at, when behind a proxy (a webhook
    #: provider may sign the URL it called: it must be known exactly).
    public_url: str | None = None
    #: The largest body any route takes (an endpoint takes its own limit, at most this).
    max_body: int = Field(default=200 * 1024 * 1024, gt=0)
    #: The largest body of the login, the API's JSON and the console's forms.
    max_json: int = Field(default=64 * 1024, ge=1024)
    #: Seconds a client has to send its request headers (a slow or idle one is closed).
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    #: Seconds a client may send no byte of its request body while the server waits for it
    #: (not while the application has not taken what came); past it, 408 and closed.
    body_timeout: float = Field(default=15.0, gt=0, le=600)
    #: Bytes a second a request body must average after its first 10 s (0: no minimum).
    min_body_rate: int = Field(default=1024, ge=0)
    #: Seconds an idle keep-alive connection stays open after a response.
    keep_alive: int = Field(default=5, ge=1, le=300)
    #: Open connections at most; beyond, the oldest one still waiting for its headers is
    #: closed, else the oldest whose body comes too slowly (408), or the new one refused
    #: (503) when all are busy.
    max_connections: int = Field(default=500, ge=10, le=100_000)
    #: The operator console (pages, /api, /metrics) on this server.
    console: bool = True
    #: Mark the session cookie Secure even over plain http (behind a TLS proxy); it is
    #: always Secure when the request came over https.
    secure_cookies: bool = False
    #: Minutes an e-mailed password-reset link stays valid (``gateway.web.account``).
    password_reset_minutes: int = Field(default=30, ge=5, le=24 * 60)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKING_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri")


class Cadence(StrictModel):
    """When a partner is expected to send: ``doc_type`` documents on each of ``days`` (mon …
    sun) that is not a non-working day of the calendar, by ``before`` (local time of the
    tracker's timezone)."""

    doc_type: Literal["order", "price-list", "invoice"] = "order"
    days: list[Weekday] = Field(default_factory=lambda: list(_WORKING_DAYS))
    before: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "10:00"


class TrackerRules(StrictModel):
    """The tracker's rules for one partner (each value left out takes the gateway's default
    from ``[tracker.defaults]``, then the built-in one). Times are minutes."""

    #: Alert on failed transmissions and failed documents.
    failures: bool | None = None
    #: Documents waiting in the outbox longer than this (broker down, unroutable).
    outbox_minutes: int | None = Field(default=None, ge=1)
    #: ERP acknowledgement expected within this many minutes of publishing, per document
    #: type ("*" for any); 0 turns the rule off for that type.
    erp_ack_minutes: dict[str, int] | None = None
    #: Interchange references (UNB 0020) that are numbers are checked for gaps; a jump larger
    #: than ``gap_window`` (or backwards) is a restart or wrap-around, not a gap.
    gaps: bool | None = None
    gap_window: int | None = Field(default=None, ge=1, le=1_000_000)
    #: Also the message references (UNH 0062) within each interchange's partner, when the
    #: partner numbers them sequentially.
    message_gaps: bool | None = None
    #: The same order or invoice number from this partner within the window: ``warn`` (an
    #: alert; both documents go to the ERP), ``accept`` (nothing) or ``reject`` (the later
    #: document is kept as DUPLICATE, not published, and an alert is raised).
    duplicate_numbers: Literal["reject", "warn", "accept"] | None = None
    duplicate_window_days: int | None = Field(default=None, ge=1, le=3650)
    #: Expected cadences; an empty list: the partner sends when it wants.
    cadence: list[Cadence] | None = None
    #: A weekday's volume below this share of the partner's average for that weekday over
    #: ``volume_weeks`` weeks (when that average is at least ``volume_min``) is a drop.
    volume_drop: float | None = Field(default=None, ge=0, le=1)
    volume_weeks: int | None = Field(default=None, ge=1, le=52)
    volume_min: int | None = Field(default=None, ge=1)
    #: A channel failing this many times in a row.
    channel_failures: int | None = Field(default=None, ge=1)
    #: Raw payloads purged from the archive after this many days (metadata kept); None keeps
    #: them for ever.
    retention_days: int | None = Field(default=None, ge=1)


#: The built-in rule values, under ``[tracker.defaults]`` and each partner's ``[tracker]``.
TRACKER_DEFAULTS = TrackerRules(
    failures=True, outbox_minutes=15, erp_ack_minutes={"*": 30}, gaps=True, gap_window=100,
    message_gaps=False, duplicate_numbers="warn", duplicate_window_days=90, cadence=[],
    volume_drop=0.5, volume_weeks=4, volume_min=5, channel_failures=3, retention_days=None)


class TrackerSettings(StrictModel):
    """The tracker: how often it checks, the calendar, where alerts go, the ERP's
    acknowledgements."""

    enabled: bool = True
    every: float = Field(default=60.0, gt=0, le=86400)  # seconds between two checks
    #: THE gateway's time zone: every time a person reads (CLI, console, e-mails) is shown
    #: in it, and cadence times and business days are in it. Times are stored in UTC and
    #: the API and ``--json`` give them as ISO 8601 with their offset.
    timezone: str = TIMEZONE
    #: Non-working days (public holidays …), ISO dates.
    holidays: list[dt.date] = Field(default_factory=list)
    events_exchange: str = "edi.events"  # durable topic exchange; alert.<kind>.<partner>
    acks_exchange: str = "edi.acks"  # durable exchange the ERP publishes acknowledgements to
    acks_queue: str = "edigw.acks"  # the gateway's queue on it
    mail_alerts: bool = True  # to [smtp] operators, when [smtp] is configured
    defaults: TrackerRules = Field(default_factory=TrackerRules)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v

    def rules_for(self, partner: Partner | None) -> TrackerRules:
        """The rules of ``partner``: its own values, else the defaults, else built-in."""
        merged = TRACKER_DEFAULTS.model_dump()
        merged.update(self.defaults.model_dump(exclude_none=True))
        if partner is not None:
            merged.update(partner.tracker.model_dump(exclude_none=True))
        return TrackerRules.model_validate(merged)


class GatewaySettings(ChannelSections, StrictModel):
    """The whole of ``gateway.toml``: the gateway's own sections here, each channel's from
    its package (``gateway.channels.registry.ChannelSections``)."""

    store: StoreSettings = Field(default_factory=StoreSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    mappings: Path = Path("mappings")
    partners: Path = PARTNERS
    #: Secrets set from the console (SFTP passwords and keys), in 0600 files.
    secrets_dir: Path = Path("var/secrets")
    #: Certificates uploaded from the console (AS2).
    certs_dir: Path = Path("var/certs")
    #: Where the settings came from (not a key of the file).
    source: str = Field(default="<embedded defaults>", exclude=True)


# -- partner profiles ---------------------------------------------------------------------

class UnbIdentifier(StrictModel):
    """An interchange sender id (UNB S002 0004) with its optional qualifier (0007)."""

    id: Annotated[str, Field(min_length=1, max_length=35)]
    qualifier: Annotated[str, Field(max_length=4)] | None = None


def _iso6523_value(value: str) -> str:
    """An ISO 6523 identifier as ``ICD:value`` (the Peppol form
    ``iso6523-actorid-upis::ICD:value`` accepted): a code of the Peppol list and a value
    its scheme accepts (GLN, SIREN, SIRET check digits)."""
    try:
        code, norm = iso6523.split(value)
    except iso6523.Malformed as exc:
        raise ValueError(str(exc)) from None
    return f"{code}:{norm}"


class Identifiers(StrictModel):
    unb: list[UnbIdentifier] = Field(default_factory=list)
    gln: list[Annotated[str, Field(pattern=r"^\d{13}$")]] = Field(default_factory=list)
    vat: list[str] = Field(default_factory=list)
    siren: list[Annotated[str, Field(pattern=r"^\d{9}$")]] = Field(default_factory=list)
    siret: list[Annotated[str, Field(pattern=r"^\d{14}$")]] = Field(default_factory=list)
    as2: list[str] = Field(default_factory=list)
    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(default_factory=list)
    phone: list[Annotated[str, Field(pattern=r"^\+?\d{6,15}$")]] = Field(default_factory=list)
    #: ISO 6523 ids (``0192:987654321``); 0088, 0009, 0002 and 9957 are looked up as the
    #: gln, siret, siren and vat they are (``core.iso6523``).
    iso6523: list[Annotated[str, AfterValidator(_iso6523_value)]] = Field(default_factory=list)


class DocumentSettings(StrictModel):
    """What a partner sends for one canonical document type."""

    type: Literal["order", "price-list", "invoice"]
    format: FormatName = "edifact"
    mapping: Annotated[str, Field(min_length=1)] | None = None


class EdifactPolicy(StrictModel):
    """How a partner's EDIFACT is judged and answered.

    - ``on_message_error``: ``fail-message`` (default) lets one bad message of an interchange
      fail alone; ``reject-interchange`` fails every message of an interchange that holds a
      bad one (for partners who resend whole interchanges).
    - ``duplicate_interchange``: what to do when an interchange reference (UNB 0020) already
      came from this partner within ``duplicate_window_days``: ``reject`` the interchange
      (0085 code 26), ``warn`` (default: processed, a warning on the timeline; its documents
      are still de-duplicated by message id) or ``accept`` without looking.
    - ``contrl``: when to answer with a CONTRL: ``never``, ``requested`` (default: when UNB
      0031 asks for one), ``errors`` (when anything was rejected, or requested) or ``always``.
    - ``contrl_accepted_messages``: list accepted messages in a CONTRL (UCM action 7) or only
      the rejected ones.
    - ``validation``: ``strict`` (every departure from the UN directory rejects the
      message), ``mapped`` (default: structure errors and errors in segments the mapping
      reads reject; a bad element in a segment the mapping never reads is a warning) or
      ``off`` (envelope checks only). See ``gateway.formats.edifact.severity``.
    """

    on_message_error: Literal["fail-message", "reject-interchange"] = "fail-message"
    duplicate_interchange: Literal["reject", "warn", "accept"] = "warn"
    duplicate_window_days: int = Field(default=365, ge=1, le=36500)
    contrl: Literal["never", "requested", "errors", "always"] = "requested"
    contrl_accepted_messages: bool = True
    validation: Literal["strict", "mapped", "off"] = "mapped"


class PartnerOutbound(StrictModel):
    """What edigw sends this partner and how.

    - ``channel``: ``folder`` (a local folder), ``sftp`` (the partner's server, ``[sftp]
      outbound_folder``), ``as2`` (``[as2] url``), ``email`` (``[email] documents_to``) or
      ``sms`` (a short confirmation to its phone).
    - ``formats``: per canonical document type, the outbound mapping (``eancom-invoic-d96a``)
      or syntax (``ubl``, ``cii``, ``factur-x``, ``csv``, ``edifact``) it receives.
    - ``recipient_id`` / ``recipient_qualifier``: its UNB identity in what we send
      (default: its first ``identifiers.unb``).
    - ``test``: the partner is in test: the test indicator is set (UNB 0035 = 1).
    - ``contrl``: ask it for a CONTRL (UNB 0031 = 1).
    - ``delivery_minutes``: a delivery not confirmed within this is alerted on.
    - ``price_lists``: the price lists it subscribes to; ``price_list_mode``: ``full`` or
      ``changes`` (only new, changed and withdrawn items since the last list delivered).
    - ``order_responses``: ``auto`` sends an order response when the ERP accepts or rejects
      one of its orders (``edi.acks``), within ``order_response_minutes``.
    - ``options``: values its renderings read (a CSV partner's delimiter, decimal mark …).
    """

    channel: Literal["folder", "sftp", "as2", "email", "sms"] = "folder"
    #: Defaults to ``<outbound.path>/<partner id>`` of the gateway settings.
    folder: Path | None = None
    formats: dict[Literal["order-response", "despatch-advice", "invoice", "price-list"],
                  Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=dict)
    recipient_id: str | None = Field(default=None, min_length=1, max_length=35)
    recipient_qualifier: str | None = Field(default=None, max_length=4)
    test: bool = False
    contrl: bool = False
    delivery_minutes: int = Field(default=240, ge=1, le=60 * 24 * 30)
    price_lists: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]] = Field(
        default_factory=list)
    price_list_mode: Literal["full", "changes"] = "full"
    order_responses: Literal["off", "auto"] = "off"
    order_response_minutes: int = Field(default=60, ge=1, le=60 * 24 * 30)
    #: What the renderers read for this partner (``ctx.options``): a CSV partner's
    #: ``delimiter``, ``decimal``, ``encoding``, ``date_format``, ``header`` …
    options: dict[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")],
                  str | int | bool] = Field(default_factory=dict)


#: Where a partner stands in its onboarding (docs/onboarding.md): ``draft`` (files
#: quarantined), ``test`` (processed, published to the test queue), ``live`` (production),
#: ``suspended`` (files received and held, nothing sent, until live again).
PartnerState = Literal["draft", "test", "live", "suspended"]
PARTNER_STATES: tuple[str, ...] = ("draft", "test", "live", "suspended")


class Partner(StrictModel):
    id: Annotated[str, Field(pattern=_ID)]
    name: Annotated[str, Field(min_length=1)]
    identifiers: Identifiers = Field(default_factory=Identifiers)
    channels: list[ChannelName] = Field(
        default_factory=lambda: ["folder"])
    documents: list[DocumentSettings] = Field(default_factory=list)
    edifact: EdifactPolicy = Field(default_factory=EdifactPolicy)
    outbound: PartnerOutbound = Field(default_factory=PartnerOutbound)
    sftp: SftpSettings | None = None
    email: PartnerEmail = Field(default_factory=PartnerEmail)
    as2: PartnerAs2 | None = None
    tracker: TrackerRules = Field(default_factory=TrackerRules)
    #: A document with the number of one received before but other content (a corrected
    #: invoice): ``hold`` keeps it as CONFLICT until an operator releases or rejects it;
    #: ``publish`` publishes it (under its own message id) with a note of the conflict.
    on_conflict: Literal["hold", "publish"] = "hold"
    enabled: bool = True
    #: Its onboarding state; a profile without it is live (as every partner was before).
    state: PartnerState = "live"
    source: str = Field(default="", exclude=True)

    @property
    def test_indicator(self) -> bool:
        """What we send it carries the test indicator (UNB 0035 = 1): it is in test, or
        its ``[outbound] test`` says so."""
        return self.state == "test" or self.outbound.test

    def mappings_named(self) -> list[str]:
        """The mappings the profile names for its documents (``core.ports.NamesMappings``)."""
        return [d.mapping for d in self.documents if d.mapping]

    def mapping_for(self, doc_type: str, fmt: str | None = None) -> str | None:
        """The mapping the profile names for ``doc_type`` (sent in format ``fmt``), if any."""
        for d in self.documents:
            if d.type == doc_type and d.mapping and (fmt is None or d.format == fmt):
                return d.mapping
        return None


@dataclass(frozen=True, slots=True)
class PartnerProblem:
    """A partner left out or disabled: its id (the file name, when the profile cannot be
    read), its profile file, and the error or reason."""

    partner_id: str
    file: str
    error: ConfigError | None = None
    why: str = ""

    @property
    def reason(self) -> str:
        """Why, without the file (the error's reason and key, or ``why``)."""
        if self.error is None:
            return self.why
        e = self.error
        shown = f" (value {e.value!r})" if e.value is not None else ""
        return (f"{e.key}: " if e.key else "") + e.reason + shown

    def __str__(self) -> str:
        return str(self.error) if self.error is not None else f"{self.file}: {self.why}"


class PartnerDirectory:
    """Partner profiles by id and by their identifiers: the live directory of a running
    gateway. Everything that looks partners up holds this one object and asks it each time;
    ``replace`` swaps in the profiles of another directory at once (one reference), and
    ``version`` counts the swaps so that what a holder derived from a profile (an AS2
    endpoint's certificates) can notice it is stale."""

    #: Identifier schemes a document may name its sender by (XML, CSV), and the profile
    #: list each is looked up in.
    SCHEMES = ("gln", "vat", "siren", "siret", "email", "phone", "as2", "iso6523")

    def __init__(self, partners: list[Partner],
                 problems: list[PartnerProblem] | None = None) -> None:
        self._index = _PartnerIndex(partners, problems or [])
        #: Bumped by each ``replace``.
        self.version = 0

    @property
    def problems(self) -> list[PartnerProblem]:
        """The profiles left out when they were loaded (each with its file and reason)."""
        return self._index.problems

    def problem_of(self, file: str | os.PathLike[str]) -> PartnerProblem | None:
        """The problem of the profile ``file``, when it was left out."""
        return next((p for p in self._index.problems if Path(p.file) == Path(file)), None)

    @property
    def partners(self) -> dict[str, Partner]:
        """The profiles by id, as they are now."""
        return self._index.by_id

    def replace(self, other: PartnerDirectory) -> None:
        """Take ``other``'s profiles: every holder sees them from its next lookup on."""
        self._index = other._index
        self.version += 1

    def __iter__(self) -> Iterator[Partner]:
        return iter(sorted(self._index.by_id.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self._index.by_id)

    def get(self, partner_id: str) -> Partner | None:
        return self._index.by_id.get(partner_id)

    def by_unb_sender(self, sender_id: str, qualifier: str | None) -> Partner | None:
        """The partner whose UNB identifier matches; a profile without qualifier matches any."""
        by_unb = self._index.by_unb
        return by_unb.get((sender_id, qualifier)) or by_unb.get((sender_id, None))

    def by_identifier(self, scheme: str, value: str) -> Partner | None:
        """The partner with this identifier (``gln``, ``vat``, ``siren`` …); ``unb`` looks in
        the UNB identifiers without qualifier. VAT ids compare without spaces, any case.
        ``iso6523`` (``0192:987654321``, or the Peppol form) is looked up as
        ``core.iso6523.canonical`` names it (``0088:X`` as gln X); None when malformed."""
        if scheme == "unb":
            return self.by_unb_sender(value, None)
        if scheme == "iso6523":
            try:
                scheme, value = iso6523.canonical(value)
            except iso6523.Malformed:
                return None
        return self._index.by_scheme.get((scheme, _norm_id(scheme, value)))


class _PartnerIndex:
    """One set of profiles and its lookup tables, never changed once built."""

    def __init__(self, partners: list[Partner], problems: list[PartnerProblem]) -> None:
        self.problems = list(problems)
        self.by_id = {p.id: p for p in partners}
        self.by_unb: dict[tuple[str, str | None], Partner] = {}
        self.by_scheme: dict[tuple[str, str], Partner] = {}
        for p in partners:
            for ident in p.identifiers.unb:
                self.by_unb[(ident.id, ident.qualifier)] = p
            for scheme in PartnerDirectory.SCHEMES:
                for value in getattr(p.identifiers, scheme):
                    if scheme == "iso6523":  # 0088:X is gln X, 0192:Y stays iso6523
                        scheme_of, value = iso6523.canonical(value)
                        key = (scheme_of, _norm_id(scheme_of, value))
                    else:
                        key = (scheme, _norm_id(scheme, value))
                    self.by_scheme.setdefault(key, p)
            if p.as2 is not None:
                self.by_scheme.setdefault(("as2", p.as2.as2_id), p)


class PartnerFolderWatch:
    """Keeps a live directory in step with its profile folder: ``check`` (every few seconds)
    compares the names, sizes and modification times of the ``*.toml`` files with the last
    look, and when they changed loads them again and ``replace``s the directory's profiles.
    A folder that does not load (a file being written, a bad value) leaves the directory as
    it was; the error is logged once per change."""

    def __init__(self, directory: PartnerDirectory, folder: str | os.PathLike[str],
                 env: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.folder = Path(folder)
        self.env = env
        self._seen = self._look()

    def _look(self) -> tuple[tuple[str, int, int], ...]:
        try:
            seen = []
            for f in sorted(self.folder.glob("*.toml")):
                st = f.stat()
                seen.append((f.name, st.st_size, st.st_mtime_ns))
            return tuple(seen)
        except OSError:  # the folder or a file went away meanwhile: looked at next time
            return ()

    def take(self, directory: PartnerDirectory) -> None:
        """Profiles loaded from the folder as it is now (the console wrote them): taken,
        and the files as they are now are no change to load again."""
        self._seen = self._look()
        self.directory.replace(directory)

    def check(self) -> bool:
        """Reload when the files changed; True when the directory took new profiles. A
        profile that no longer loads (a file being written, a bad value) is logged once and
        left as it was loaded before; the other profiles are taken."""
        now = self._look()
        if now == self._seen:
            return False
        self._seen = now
        loaded = load_partners(self.folder, self.env)
        kept: list[Partner] = []
        for problem in loaded.problems:
            before = self.directory.get(problem.partner_id)
            held = before is not None and loaded.get(problem.partner_id) is None
            if held and before is not None:
                kept.append(before)
            _log().error("partner_not_reloaded", file=problem.file, partner=problem.partner_id,
                         error=str(problem), hint="the profile loaded before stays in use"
                         if held else "the partner is disabled until its profile is fixed")
        if kept:
            loaded = PartnerDirectory([*loaded, *kept], loaded.problems)
        self.directory.replace(loaded)
        _log().info("partners_reloaded", folder=str(self.folder), partners=len(loaded))
        return True


def _norm_id(scheme: str, value: str) -> str:
    value = value.strip()
    if scheme in ("vat", "siren", "siret", "phone"):
        value = "".join(value.split()).upper()
        if scheme == "phone" and value.startswith("00"):
            value = "+" + value[2:]
    elif scheme == "email":
        value = value.lower()
    return value


# -- loading ------------------------------------------------------------------------------

def load_settings(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None) -> GatewaySettings:
    """Settings from ``path`` (or ``$EDIGW_CONFIG``, or ``config/gateway.toml`` when it exists,
    or the embedded defaults), with environment references and overrides applied."""
    env = os.environ if env is None else env
    raw = read_raw(path, env, _ENV_KEYS)
    data, source, from_env = raw.data, raw.source, raw.from_env
    named = data.get("mappings", "mappings")
    if isinstance(named, str) and Path(named) == Path("mappings") and not Path(named).is_dir():
        # The default folder (left out or written as the shipped file does) is not there (an
        # installed gateway run from another folder): the mappings shipped with edigw.
        data["mappings"] = shipped("mappings")
    try:
        settings = _validate(GatewaySettings, data, source)
    except ConfigError as exc:
        variable = from_env.get(exc.key or "")
        if variable is None:
            raise
        raise ConfigError(exc.reason, file=f"environment variable {variable}", key=exc.key,
                          value=exc.value) from None
    base = env.get("EDIGW_VAR")
    return _rebase_var(settings, Path(base)) if base else settings


#: The keys an ``EDIGW_…`` variable overrides (``gateway.config_file.ENV_KEYS``), and every
#: key of ``[http]`` besides. docs/deploy.md lists them all.
_ENV_KEYS: tuple[tuple[str | None, str], ...] = (
    *ENV_KEYS, *(("http", key) for key in HttpSettings.model_fields))


def _rebase_var(model: M, base: Path) -> M:
    """``model`` with every relative path that starts with ``var/`` (and the SQLite store's
    file) moved under ``base`` (``$EDIGW_VAR``)."""
    changes: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        new = _rebased(value, base)
        if new is not value:
            changes[name] = new
    if isinstance(model, StoreSettings) and rebased_store_url(model.url, base) != model.url:
        changes["url"] = rebased_store_url(model.url, base)
    return model.model_copy(update=changes) if changes else model


def _rebased(value: Any, base: Path) -> Any:
    if isinstance(value, Path):
        return rebased_path(value, base)
    if isinstance(value, BaseModel):
        return _rebase_var(value, base)
    if isinstance(value, list):
        items = [_rebased(v, base) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def load_partners(folder: str | os.PathLike[str], env: Mapping[str, str] | None = None, *,
                  strict: bool = False) -> PartnerDirectory:
    """Every ``*.toml`` profile in ``folder``; ids and UNB identifiers must be unique.

    A profile that cannot be read or is wrong (bad TOML, an unknown key or a bad value, an
    id other than its file name, an identifier another profile already has) is left out
    alone and recorded in the directory's ``problems`` with its file and reason: that
    partner is disabled, the others load. With ``strict``, the first problem is raised."""
    env = os.environ if env is None else env
    folder = Path(folder)
    partners: list[Partner] = []
    problems: list[PartnerProblem] = []
    seen_unb: dict[tuple[str, str | None], str] = {}
    seen_ids: dict[tuple[str, str], str] = {}
    if folder.is_dir():
        for file in sorted(folder.glob("*.toml")):
            try:
                partner = _load_profile(file, env, seen_ids, seen_unb)
            except ConfigError as exc:
                if strict:
                    raise
                problems.append(PartnerProblem(file.stem, str(file), exc))
                continue
            partners.append(partner)
    return PartnerDirectory(partners, problems)


def _load_profile(file: Path, env: Mapping[str, str], seen_ids: dict[tuple[str, str], str],
                  seen_unb: dict[tuple[str, str | None], str]) -> Partner:
    """The profile of ``file``, its unique identifiers added to ``seen_ids`` and
    ``seen_unb`` once it is taken (a profile refused claims none of them)."""
    data = read_toml(file, env)
    data["source"] = str(file)
    partner = _validate(Partner, data, str(file))
    if partner.id != file.stem:
        raise ConfigError("partner id must equal the file name", file=str(file),
                          key="id", value=partner.id)
    ids = _unique_ids(partner)
    for scheme, value in sorted(ids):
        if (scheme, value) in seen_ids:
            raise ConfigError(f"{scheme} id already belongs to partner "
                              f"{seen_ids[(scheme, value)]}", file=str(file),
                              key=f"identifiers.{scheme}", value=value)
    unb = [(ident.id, ident.qualifier) for ident in partner.identifiers.unb]
    for i, key in enumerate(unb):
        if key in seen_unb or key in unb[:i]:
            owner = seen_unb.get(key, partner.id)
            raise ConfigError(f"UNB sender id already belongs to partner {owner}",
                              file=str(file), key="identifiers.unb", value=key[0])
    for scheme, value in ids:
        seen_ids[(scheme, value)] = partner.id
    for key in unb:
        seen_unb[key] = partner.id
    return partner


def _unique_ids(partner: Partner) -> set[tuple[str, str]]:
    """The AS2 ids and phone numbers of a profile: each may belong to one partner only (a
    message is identified by them alone)."""
    ids = {("as2", v) for v in partner.identifiers.as2}
    if partner.as2 is not None:
        ids.add(("as2", partner.as2.as2_id))
    ids |= {("phone", _norm_id("phone", v)) for v in partner.identifiers.phone}
    return ids


def partner_toml(partner: Partner) -> str:
    """A partner profile as TOML, as ``edigw partners add`` writes it."""
    lines = [f"id = {_q(partner.id)}", f"name = {_q(partner.name)}",
             "channels = [" + ", ".join(_q(c) for c in partner.channels) + "]", ""]
    if partner.state != "live":
        lines.insert(2, f"state = {_q(partner.state)}")
    ids = partner.identifiers
    lines.append("[identifiers]")
    if ids.unb:
        items = []
        for u in ids.unb:
            q = f", qualifier = {_q(u.qualifier)}" if u.qualifier else ""
            items.append(f"{{ id = {_q(u.id)}{q} }}")
        lines.append("unb = [" + ", ".join(items) + "]")
    for name in ("gln", "vat", "siren", "siret", "as2", "email", "phone", "iso6523"):
        values = getattr(ids, name)
        if values:
            lines.append(f"{name} = [" + ", ".join(_q(v) for v in values) + "]")
    for d in partner.documents:
        lines += ["", "[[documents]]", f"type = {_q(d.type)}", f"format = {_q(d.format)}"]
        if d.mapping:
            lines.append(f"mapping = {_q(d.mapping)}")
    for section, value in (("edifact", partner.edifact), ("outbound", partner.outbound)):
        changed = value.model_dump(exclude_defaults=True, mode="json")
        if changed:
            lines += ["", f"[{section}]"]
            for key, v in changed.items():
                shown = _q(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
                lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _validate(model: type[M], data: dict[str, Any], file: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or None
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        value = err.get("input")
        if isinstance(value, dict):
            value = None
        if key and ("url" in key.split(".")[-1] or "password" in key):
            if isinstance(value, str):
                value = mask_url(value)
            elif isinstance(value, list):  # [broker] urls
                value = [mask_url(v) if isinstance(v, str) else v for v in value]
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigError(reason + more, file=file, key=key, value=value) from None
