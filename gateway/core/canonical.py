"""Canonical documents: what the ERP receives, whatever the partner sent.

Each type is versioned by its ``schema`` value (``edigw.order/1``). The JSON Schemas under
``schemas/canonical/`` are generated from these models (``edigw schemas write``) and a test
fails when the two drift. Amounts and quantities are decimals written as JSON strings so that
no precision is lost on the way to the ERP.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

ORDER_SCHEMA = "edigw.order/1"

#: A decimal travels as a JSON string so that no precision is lost. Its schema is spelled
#: out here rather than left to pydantic, whose generated pattern changes between releases.
Amount = Annotated[Decimal, WithJsonSchema(
    {"type": "string", "pattern": r"^[+-]?(\d+(\.\d*)?|\.\d+)$",
     "description": "decimal number written as a string, '.' as decimal mark"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Party(_Strict):
    """A party named in a document (NAD in EDIFACT)."""

    gln: str | None = Field(None, description="GS1 Global Location Number (13 digits, checked)")
    id: str | None = Field(None, description="Party identifier as sent (NAD C082 3039)")
    id_agency: str | None = Field(None, description="Code list agency of the id (3055: 9 = GS1)")
    name: str | None = None
    street: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = Field(None, description="ISO 3166-1 alpha-2")
    vat_id: str | None = None


class Parties(_Strict):
    """The parties of an order, by role."""

    buyer: Party | None = None
    supplier: Party | None = None
    delivery_point: Party | None = None
    invoicee: Party | None = None


class Source(_Strict):
    """Where a canonical document came from, for tracing back to the partner's file."""

    format: Literal["edifact", "xml", "csv", "sms"]
    standard: str = Field(description="EANCOM, UN/EDIFACT, UBL …")
    version: str = Field(description="Directory or schema version, e.g. D96A")
    association: str | None = Field(None, description="Association assigned code, e.g. EAN008")
    mapping: str = Field(description="Mapping id that produced this document")
    sender_id: str | None = None
    sender_qualifier: str | None = None
    recipient_id: str | None = None
    interchange_ref: str | None = Field(None, description="UNB 0020 control reference")
    message_ref: str | None = Field(None, description="UNH 0062 message reference")
    filename: str | None = None
    transmission_id: str | None = None


class OrderLine(_Strict):
    """One ordered item."""

    line_number: str | None = None
    item_code: str | None = Field(
        None, description="The line's item number exactly as sent (EDIFACT LIN C212 7140), "
        "kept even when it is not a valid GTIN")
    item_code_type: str | None = Field(
        None, description="What item_code is (7143: EN/SRV = GTIN, SA = supplier's, IN = buyer's)")
    gtin: str | None = Field(None, description="GS1 GTIN (8, 12, 13 or 14 digits, checked)")
    supplier_article: str | None = None
    buyer_article: str | None = None
    description: str | None = None
    quantity: Amount
    unit: str | None = Field(None, description="UN/ECE Recommendation 20 unit code")
    unit_price: Amount | None = None
    price_basis_quantity: Amount | None = None
    line_amount: Amount | None = None
    requested_delivery_date: dt.date | dt.datetime | None = None


class Order(_Strict):
    """A purchase order (``edigw.order/1``)."""

    schema_: Literal["edigw.order/1"] = Field(ORDER_SCHEMA, alias="schema")
    message_id: str = Field(description="Stable id: the same source message always gives the same id")
    partner: str = Field(description="Partner id from the partner profile")
    order_number: str = Field(min_length=1)
    order_type: str | None = Field(None, description="Document name code (BGM 1001), e.g. 220")
    function: str | None = Field(None, description="original, replace, cancel, copy … (BGM 1225)")
    issue_date: dt.date | dt.datetime | None = None
    requested_delivery_date: dt.date | dt.datetime | None = None
    currency: str | None = Field(None, description="ISO 4217")
    parties: Parties = Field(default_factory=Parties)
    lines: list[OrderLine] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    source: Source

    #: The field that holds the document's business number (what support staff search by).
    business_field: ClassVar[str] = "order_number"

    @property
    def business_number(self) -> str:
        return self.order_number

    def to_json_bytes(self) -> bytes:
        """The document as the ERP receives it: UTF-8 JSON, decimals as strings."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


CANONICAL_MODELS: dict[str, type[BaseModel]] = {"order": Order}


def document_type_of(model: BaseModel) -> str:
    """The canonical type name (``order``) of a document instance."""
    for name, cls in CANONICAL_MODELS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"not a canonical document: {type(model).__name__}")


def json_schema(doc_type: str) -> dict[str, Any]:
    """The JSON Schema of a canonical type, as written under ``schemas/canonical/``."""
    model = CANONICAL_MODELS[doc_type]
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    version = model.model_fields["schema_"].default
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://edigw.dev/schemas/{version}"
    return schema


def json_schema_text(doc_type: str) -> str:
    return json.dumps(json_schema(doc_type), indent=2, sort_keys=True) + "\n"
