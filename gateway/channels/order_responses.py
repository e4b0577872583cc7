"""Automatic order responses: when the ERP accepts or rejects an order (``edi.acks``) of a
partner whose profile says ``outbound.order_responses = "auto"``, edigw answers the partner
with an ``edigw.order-response/1`` built from the order as it was received.

- **accepted**: every line accepted as ordered (quantities, articles, prices and requested
  dates from the stored order), unless the ERP's acknowledgement carries line details
  (below): then the lines it names are changed or rejected as it says, and the response is
  ``accepted-with-changes``.
- **rejected**: the whole order, with the ERP's reason; every line rejected (quantity 0).

The acknowledgement may carry, besides its documented fields (``docs/erp-acks.md``, other
fields are ignored by the acknowledgement itself)::

    {"message_id": "…", "status": "accepted",
     "delivery_date": "2024-05-10",
     "lines": [{"line_number": "2", "quantity": "4", "delivery_date": "2024-05-14",
                "reason": "partial stock"},
               {"line_number": "3", "status": "rejected", "reason": "discontinued"}]}

The response is handed to the outbound intake (``origin="ack"``,
``ref="ordrsp:<document id>"``: a redelivered acknowledgement sends nothing twice) for the
partner, in the format its profile names for order responses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import structlog

from gateway.channels.intake import OutboundIntake, OutboundResult
from gateway.core.canonical import ORDER_RESPONSE_SCHEMA
from gateway.store.db import Store
from gateway.store.read.transmissions import document_meta

if TYPE_CHECKING:
    from gateway.config import Partner

log = structlog.get_logger("edigw.order_responses")

ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"

#: What an order line and its answer share, copied as ordered.
_ARTICLE = ("line_number", "gtin", "item_code", "item_code_type", "supplier_article",
            "buyer_article", "description", "unit", "unit_price")

#: ``on_order_answered(document_id, erp_status, reason, details)`` of ``AckConsumer``.
OnOrderAnswered = Callable[[str, str, "str | None", dict[str, Any]], "OutboundResult | None"]


def response_ref(document_id: str) -> str:
    """The intake reference of the order response to ``document_id``."""
    return f"ordrsp:{document_id}"


def build_order_response(order: dict[str, Any], *, document_id: str, erp_status: str,
                         reason: str | None = None, details: dict[str, Any] | None = None,
                         today: dt.date | None = None) -> dict[str, Any]:
    """The canonical order response (as JSON data) answering ``order`` (its canonical JSON
    as stored) with the ERP's word; ``details``: the acknowledgement message (its
    ``lines`` and ``delivery_date``, when it has them)."""
    details = details or {}
    number = str(order["order_number"])
    response: dict[str, Any] = {
        "schema": ORDER_RESPONSE_SCHEMA,
        "message_id": f"ordrsp-{document_id}"[:64],
        "partner": order.get("partner"),
        "response_number": f"R-{number}"[:35],
        "order_number": number,
        "issue_date": (today or dt.date.today()).isoformat(),
        "parties": order.get("parties") or {},
        "source": {"format": "erp", "standard": "edigw", "version": "1",
                   "mapping": "order-response-auto"},
    }
    for key in ("currency",):
        if order.get(key):
            response[key] = order[key]
    if order.get("issue_date"):
        response["order_date"] = order["issue_date"]
    if erp_status.upper() == REJECTED:
        response["status"] = "rejected"
        response["reason"] = reason or "rejected"
        # Every line rejected too: a format with one row per line (CSV) says it as well.
        response["lines"] = [
            {**_answer_line(ordered, str(ordered.get("line_number") or i), None, None)[0],
             "status": "rejected", "quantity": "0"}
            for i, ordered in enumerate(order.get("lines") or [], start=1)]
        return response
    delivery = details.get("delivery_date") if isinstance(details.get("delivery_date"), str) \
        else None
    delivery = delivery or order.get("requested_delivery_date")
    if delivery:
        response["delivery_date"] = delivery
    said = _line_details(details)
    lines = []
    changed = False
    for i, ordered in enumerate(order.get("lines") or [], start=1):
        key = str(ordered.get("line_number") or i)
        line, differs = _answer_line(ordered, key, said.pop(key, None), delivery)
        lines.append(line)
        changed = changed or differs
    response["lines"] = lines
    if said:  # lines the ERP named that the order does not have: say so, change nothing
        response["notes"] = [f"the ERP named order line(s) {', '.join(sorted(said))}, "
                             "which the order does not have"]
    response["status"] = "accepted-with-changes" if changed else "accepted"
    if changed and reason:
        response["reason"] = reason
    return response


def _line_details(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ERP's line details by line number (malformed entries are left out)."""
    out: dict[str, dict[str, Any]] = {}
    lines = details.get("lines")
    if not isinstance(lines, list):
        return out
    for entry in lines:
        if isinstance(entry, dict) and entry.get("line_number") not in (None, ""):
            out[str(entry["line_number"])] = entry
    return out


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None and not isinstance(value, bool) \
            else None
    except InvalidOperation:
        return None


def _answer_line(ordered: dict[str, Any], key: str, said: dict[str, Any] | None,
                 delivery: Any) -> tuple[dict[str, Any], bool]:
    """One line of the response, and whether it differs from the order."""
    line: dict[str, Any] = {k: ordered[k] for k in _ARTICLE if ordered.get(k) is not None}
    line["line_number"] = key
    quantity = ordered.get("quantity")
    line["ordered_quantity"] = quantity
    line["quantity"] = quantity
    date = ordered.get("requested_delivery_date") or delivery
    if date:
        line["delivery_date"] = date
    line["status"] = "accepted"
    if said is None:
        return line, False
    status = str(said.get("status") or "").lower()
    if status == "rejected":
        line.update(status="rejected", quantity="0")
    else:
        confirmed = _decimal(said.get("quantity"))
        if confirmed is not None and confirmed >= 0:
            line["quantity"] = str(confirmed)
        if isinstance(said.get("delivery_date"), str) and said["delivery_date"]:
            line["delivery_date"] = said["delivery_date"]
        same = (_decimal(line["quantity"]) == _decimal(quantity)
                and line.get("delivery_date") == date and status in ("", "accepted"))
        line["status"] = "accepted" if same else "changed"
    for field in ("reason", "reason_code"):
        if isinstance(said.get(field), str) and said[field] and line["status"] != "accepted":
            line[field] = said[field]
    return line, line["status"] != "accepted"


def order_responder(store: Store, intake: OutboundIntake,
                    partners: Callable[[str], Partner | None],
                    today: Callable[[], dt.date] = dt.date.today) -> OnOrderAnswered:
    """The ``on_order_answered`` callback of ``AckConsumer``: answers an order the ERP
    accepted or rejected when its partner wants automatic order responses; None for any
    other document (not an order, a partner without them). Raises StoreError when the
    store cannot be read or the response cannot be received (the acknowledgement is then
    redelivered and this is tried again)."""

    def on_order_answered(document_id: str, erp_status: str, reason: str | None,
                          details: dict[str, Any]) -> OutboundResult | None:
        meta = document_meta(store, document_id)
        if meta is None or meta.get("doc_type") != "order" or not meta.get("partner_id"):
            return None
        partner = partners(meta["partner_id"])
        if partner is None or partner.outbound.order_responses != "auto":
            return None
        order = store.document_payload(document_id)
        response = build_order_response(order, document_id=document_id,
                                        erp_status=erp_status, reason=reason,
                                        details=details, today=today())
        response["partner"] = partner.id
        result = intake.accept(json.dumps(response, ensure_ascii=False).encode("utf-8"),
                               origin="ack", ref=response_ref(document_id),
                               partner=partner.id, doc_type="order-response")
        if not result.repeat:
            log.info("order_response_auto", document_id=document_id, partner=partner.id,
                     order_number=order.get("order_number"), erp_status=erp_status,
                     status=result.status, transmission_id=result.transmission_id,
                     stage=result.stage, reason=result.reason)
        return result

    return on_order_answered
