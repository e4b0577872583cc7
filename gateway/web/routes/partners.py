"""``/api/partners``: partner profiles with their activity (viewer) and their administration
(admin), over ``PartnerAdmin``.

Routes (mounted under ``/api``)::

    GET    /partners                               viewer  profiles + last contact, health, alerts
    GET    /partners/{id}                          viewer  one of them
    POST   /partners                               admin   {id, name, unb?, gln?, emails?, channels?,
                                                            identifiers?, documents?, state?}
    PATCH  /partners/{id}/identifiers              admin   {unb?, gln?, vat?, siren?, siret?, as2?,
                                                            email?, phone?}: each list given
                                                            replaces that scheme's
    GET    /partners/{id}/certificates             viewer  its AS2 certificates: subject, issuer,
                                                           serial, not_after, days_left, badge,
                                                           usage, fingerprint
    DELETE /partners/{id}/certificates/{sha256}    admin   one taken out of its profile
    POST   /partners/{id}/disable                  admin   -
    POST   /partners/{id}/enable                   admin   -
    PATCH  /partners/{id}/contacts                 admin   {name?, emails?, reply_to?}
    PUT    /partners/{id}/sftp/password            admin   {password}
    PUT    /partners/{id}/sftp/key                 admin   {private_key, passphrase?}
    PUT    /partners/{id}/sftp/host-key            admin   {host_key}
    POST   /partners/{id}/as2/certificates         admin   PEM/DER body, or multipart "certificate";
                                                           ?as2_id= creates [as2]
    …                                              admin   each channel's own routes
                                                           (``ChannelKind.partner_api``)
    PUT    /partners/{id}/documents                admin   {documents: [{type, format, mapping?}]}
    PATCH  /partners/{id}/acknowledgements         admin   {contrl?, email_acknowledgements?,
                                                            failure_notices?}
    GET    /partners/{id}/checklist                viewer  the go-live checklist
    POST   /partners/{id}/state                    admin   {state, reason, force?}; going live
                                                           releases what was held

Every change is judged as ``edigw check-config`` judges the configuration before it is written:
what it would refuse is a 422 with field ``check-config``.
Refusals: 404 unknown partner, 422 ``{"detail": {"field", "reason"}}``, 409 ``{"detail":
{"field", "value", "owner"}}``; promotion to live refused: 409 ``{"detail": {"reason",
"missing": [{name, ok, detail}]}}``.The audit trail is read at ``/api/audit`` (the console's).
The app state holds ``gateway`` (``.settings``, ``.store``) and the ``Authenticator`` as
``auth``; ``partner_admin`` is made from them on first use unless the app set one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from gateway.channels.registry import CHANNELS
from gateway.config import ChannelName
from gateway.store.audit import AuditLog
from gateway.store.channels import ChannelRecords
from gateway.store.db import Store
from gateway.store.read.activity import last_contact, open_alerts_by_partner
from gateway.web.deps import Admin, Viewer, remote
from gateway.web.partners_admin import (
    Conflict,
    Invalid,
    NotFound,
    NotReady,
    PartnerAdmin,
    PartnerAdminError,
)

router = APIRouter(prefix="/partners", tags=["partners"])

MAX_CERTIFICATE = 64 * 1024
#: The body of a certificate upload (a multipart form around a certificate) at most.
MAX_UPLOAD = 1024 * 1024
#: Routes taking more than the HTTP server's ``max_json``: (path pattern, body limit).
UPLOAD_LIMITS = [(r"/api/partners/[^/]+/as2/certificates", MAX_UPLOAD),
                 (r"/partners/[^/]+/as2-certificate", MAX_UPLOAD)]


def partner_admin(request: Request) -> PartnerAdmin:
    """The app's ``PartnerAdmin`` (``app.state.partner_admin``), made on first use from the
    gateway: audit in its store, changes passed to its ``partners_changed``."""
    state = request.app.state
    admin: PartnerAdmin | None = getattr(state, "partner_admin", None)
    if admin is None:
        gw = state.gateway
        admin = PartnerAdmin(gw.settings, audit=AuditLog(gw.store),
                             on_change=getattr(gw, "partners_changed", None))
        state.partner_admin = admin
    return admin


Admin_ = Annotated[PartnerAdmin, Depends(partner_admin)]
#: The partner administration service, as a route of a channel's ``partner_api`` asks for it.
PartnerAdminDep = Admin_


# -- activity ------------------------------------------------------------------------------

def partner_activity(store: Store, partner_ids: Iterable[str] | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Per partner: the last transmission per channel (``last_contact``), the health of its
    channels and the number of open or acknowledged alerts (the pages show the same)."""
    wanted = None if partner_ids is None else list(partner_ids)
    out: dict[str, dict[str, Any]] = {}

    def slot(pid: str) -> dict[str, Any]:
        return out.setdefault(pid, {"last_contact": {}, "channels": [], "open_alerts": 0})

    for pid, channels in last_contact(store, wanted).items():
        slot(pid)["last_contact"].update({c: at.isoformat() for c, at in channels.items()})
    for pid, n in open_alerts_by_partner(store, wanted).items():
        slot(pid)["open_alerts"] = n
    for h in ChannelRecords(store).health():
        if h.partner_id and (wanted is None or h.partner_id in wanted):
            slot(h.partner_id)["channels"].append(
                {k: v.isoformat() if isinstance(v, dt.datetime) else v
                 for k, v in h.as_dict().items()} | {"healthy": h.healthy})
    for pid in wanted or ():
        slot(pid)
    return out


def _empty_activity() -> dict[str, Any]:
    return {"last_contact": {}, "channels": [], "open_alerts": 0}


def _refused(exc: PartnerAdminError) -> HTTPException:
    if isinstance(exc, NotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, NotReady):
        return HTTPException(status.HTTP_409_CONFLICT,
                             {"reason": str(exc), "missing": [i.as_dict() for i in exc.missing]})
    if isinstance(exc, Conflict):
        return HTTPException(status.HTTP_409_CONFLICT,
                             {"field": exc.field, "value": exc.value, "owner": exc.owner})
    if isinstance(exc, Invalid):
        return HTTPException(422,
                             {"field": exc.field, "reason": exc.reason})
    return HTTPException(status.HTTP_400_BAD_REQUEST, str(exc))


def run_admin(call: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
              ) -> dict[str, Any]:
    """``call(*args, **kwargs)``, a refusal turned into its HTTP error (404, 409, 422)."""
    try:
        return call(*args, **kwargs)
    except PartnerAdminError as exc:
        raise _refused(exc) from exc


# -- reading -------------------------------------------------------------------------------

@router.get("", summary="Partners with their last contact per channel, health and alerts")
def list_partners(request: Request, who: Viewer, admin: Admin_) -> list[dict[str, Any]]:
    profiles = run_admin(lambda: {"all": admin.list()})["all"]
    activity = partner_activity(request.app.state.gateway.store)
    return [p | activity.get(p["id"], _empty_activity()) for p in profiles]


@router.get("/{pid}", summary="One partner's profile (secrets masked) and activity")
def get_partner(pid: str, request: Request, who: Viewer, admin: Admin_) -> dict[str, Any]:
    profile = run_admin(admin.get, pid)
    return profile | partner_activity(request.app.state.gateway.store, [pid])[pid]


# -- administration ------------------------------------------------------------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _folder_only() -> list[ChannelName]:
    """A new partner's channels unless given: its folder."""
    return ["folder"]


class UnbIn(_Body):
    id: Annotated[str, Field(min_length=1, max_length=35)]
    qualifier: Annotated[str, Field(max_length=4)] | None = None


class IdentifiersIn(_Body):
    """Each list given replaces that scheme's (an empty one removes it); ``unb`` items as
    ``{id, qualifier}`` or ``"ID:QUALIFIER"``."""

    unb: list[UnbIn | str] | None = None
    gln: list[str] | None = None
    vat: list[str] | None = None
    siren: list[str] | None = None
    siret: list[str] | None = None
    as2: list[str] | None = None
    email: list[str] | None = None
    phone: list[str] | None = None

    def given(self) -> dict[str, Any]:
        """The schemes given, as ``PartnerAdmin.set_identifiers`` takes them."""
        out: dict[str, Any] = {}
        for scheme in type(self).model_fields:
            values = getattr(self, scheme)
            if values is not None:
                out[scheme] = [v.model_dump(exclude_none=True) if isinstance(v, UnbIn) else v
                               for v in values]
        return out


class NewPartner(_Body):
    id: str
    name: Annotated[str, Field(min_length=1)]
    unb: list[str] = Field(default_factory=list)
    gln: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    channels: list[ChannelName] = Field(default_factory=_folder_only)
    identifiers: IdentifiersIn | None = None
    documents: list[dict[str, Any]] = Field(default_factory=list)
    state: Literal["draft", "test", "live", "suspended"] | None = None


class Contacts(_Body):
    name: str | None = None
    emails: list[str] | None = None
    reply_to: list[str] | None = None


class SftpPassword(_Body):
    password: Annotated[str, Field(min_length=1)]


class SftpKey(_Body):
    private_key: Annotated[str, Field(min_length=1)]
    passphrase: str | None = None


class HostKey(_Body):
    host_key: Annotated[str, Field(min_length=1)]


class Documents(_Body):
    documents: list[dict[str, Any]]


class Acknowledgements(_Body):
    contrl: Literal["never", "requested", "errors", "always"] | None = None
    email_acknowledgements: bool | None = None
    failure_notices: bool | None = None


@router.post("", status_code=status.HTTP_201_CREATED, summary="Open a partner account")
def create_partner(body: NewPartner, request: Request, who: Admin,
                   admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.create, who.username, body.id, body.name, unb=body.unb, gln=body.gln,
                     emails=body.emails, channels=body.channels, remote=remote(request),
                     identifiers=body.identifiers.given() if body.identifiers else None,
                     documents=body.documents, state=body.state)


@router.patch("/{pid}/identifiers", summary="Change the identifiers (UNB, GLN, VAT, "
              "e-mail, phone …)")
def set_identifiers(pid: str, body: IdentifiersIn, request: Request, who: Admin,
                    admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_identifiers, who.username, pid, body.given(),
                     remote=remote(request))


@router.get("/{pid}/certificates", summary="The partner's AS2 certificates, judged now")
def list_certificates(pid: str, who: Viewer, admin: Admin_) -> dict[str, Any]:
    found = run_admin(lambda: {"items": admin.certificates(pid)})["items"]
    return {"partner_id": pid, "items": [c.as_dict() for c in found]}


@router.delete("/{pid}/certificates/{fingerprint}",
               summary="Take a certificate (by SHA-256 fingerprint) out of the profile")
def remove_certificate(pid: str, fingerprint: str, request: Request, who: Admin,
                       admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.remove_certificate, who.username, pid, fingerprint,
                     remote=remote(request))


@router.post("/{pid}/disable", summary="Disable a partner account")
def disable_partner(pid: str, request: Request, who: Admin, admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.disable, who.username, pid, remote=remote(request))


@router.post("/{pid}/enable", summary="Enable a partner account again")
def enable_partner(pid: str, request: Request, who: Admin, admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.enable, who.username, pid, remote=remote(request))


@router.patch("/{pid}/contacts", summary="Change name, mail addresses and reply-to")
def set_contacts(pid: str, body: Contacts, request: Request, who: Admin,
                 admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_contacts, who.username, pid, name=body.name, emails=body.emails,
               reply_to=body.reply_to, remote=remote(request))


@router.put("/{pid}/sftp/password", summary="Set or rotate the SFTP password")
def set_sftp_password(pid: str, body: SftpPassword, request: Request, who: Admin,
                      admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_sftp_password, who.username, pid, body.password,
               remote=remote(request))


@router.put("/{pid}/sftp/key", summary="Set or rotate the SFTP private key")
def set_sftp_key(pid: str, body: SftpKey, request: Request, who: Admin,
                 admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_sftp_key, who.username, pid, body.private_key, body.passphrase,
               remote=remote(request))


@router.put("/{pid}/sftp/host-key", summary="Pin the SFTP server's host key")
def set_sftp_host_key(pid: str, body: HostKey, request: Request, who: Admin,
                      admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_sftp_host_key, who.username, pid, body.host_key,
               remote=remote(request))


@router.post("/{pid}/as2/certificates", status_code=status.HTTP_201_CREATED,
             summary="Upload the partner's AS2 certificate (PEM or DER)")
async def upload_as2_certificate(pid: str, request: Request, who: Admin, admin: Admin_,
                                 as2_id: Annotated[str | None, Query()] = None
                                 ) -> dict[str, Any]:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("certificate")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422,
                                {"field": "certificate", "reason": "a file field "
                                 "'certificate' is required"})
        data = await upload.read(MAX_CERTIFICATE + 1)
    else:
        data = await request.body()
    if not data or len(data) > MAX_CERTIFICATE:
        raise HTTPException(422,
                            {"field": "certificate", "reason": "empty or larger than "
                             f"{MAX_CERTIFICATE} bytes"})
    return await run_in_threadpool(run_admin, admin.upload_as2_certificate, who.username, pid,
                                   data, as2_id=as2_id, remote=remote(request))


@router.put("/{pid}/documents", summary="Replace the documents and their mappings")
def set_documents(pid: str, body: Documents, request: Request, who: Admin,
                  admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_documents, who.username, pid, body.documents,
               remote=remote(request))


@router.patch("/{pid}/acknowledgements", summary="Change the acknowledgement wishes")
def set_acknowledgements(pid: str, body: Acknowledgements, request: Request, who: Admin,
                         admin: Admin_) -> dict[str, Any]:
    return run_admin(admin.set_acknowledgements, who.username, pid, contrl=body.contrl,
               email_acknowledgements=body.email_acknowledgements,
               failure_notices=body.failure_notices, remote=remote(request))


# -- onboarding ------------------------------------------------------------------------------

class StateChange(_Body):
    state: str
    reason: str = ""
    force: bool = False


@router.get("/{pid}/checklist", summary="The partner's go-live checklist")
def get_checklist(pid: str, who: Viewer, admin: Admin_) -> dict[str, Any]:
    items = run_admin(lambda: {"items": admin.checklist(pid)})["items"]
    return {"partner": pid, "state": admin.get(pid)["state"],
            "ready": all(i.ok for i in items), "items": [i.as_dict() for i in items]}


@router.post("/{pid}/state", summary="Change the partner's state (draft, test, live, "
             "suspended)", responses={409: {"description": "promotion to live refused: the "
                                            "checklist's missing items"}})
def set_state(pid: str, body: StateChange, request: Request, who: Admin,
              admin: Admin_) -> dict[str, Any]:
    gateway = request.app.state.gateway

    def release(partner_id: str) -> int:
        from gateway.tracker.onboarding import release_held

        return len(release_held(gateway, partner_id, by=who.username, reason=body.reason))

    return run_admin(admin.set_state, who.username, pid, body.state, reason=body.reason,
                     force=body.force, remote=remote(request), release=release)


def _mount_channel_routes() -> None:
    """Each channel's own partner routes (``ChannelKind.partner_api``), under ``/partners``."""
    for kind in CHANNELS:
        if kind.partner_api is not None:
            router.include_router(kind.partner_api())


_mount_channel_routes()
