"""XSD validation of XML documents before they are mapped.

Schemas are known by a key that ``detect`` gives each document (``ubl-2.1:Invoice``,
``cii-d16b``, ``factur-x:en16931``, ``order-x:basic``, ``zugferd-1``). Each key names the root
XSD of a schema set under ``schemas/xsd/``; another key is added with ``register_schema``.

A schema set is loaded once per process and kept (compiling the UBL 2.1 Invoice schema takes
about a second). Its imports and includes are read from local files only: the schema
documents are parsed with network access off, and a resolver refuses any ``http:``,
``https:`` or ``ftp:`` location, so a schema can never make the gateway fetch anything.
The shipped schemas are trusted files, so their internal entities (the W3C signature schema
declares some) are expanded; external entities are not.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lxml import etree

from gateway.core.errors import Position
from gateway.formats.xml.safe import XmlError
from gateway.shipped import shipped


def _xsd_root() -> Path:
    """``$EDIGW_SCHEMAS/xsd``, else ``schemas/xsd`` under the working directory when there is
    one, else the shipped schemas (the checkout's ``schemas/xsd``, or the wheel's copy: see
    ``gateway.shipped``)."""
    env = os.environ.get("EDIGW_SCHEMAS")
    if env:
        return Path(env) / "xsd"
    local = Path("schemas", "xsd").resolve()
    return local if local.is_dir() else shipped("schemas") / "xsd"


#: Where the standards' XSD files are (see ``_xsd_root``).
XSD_ROOT = _xsd_root()

_registry: dict[str, Path] = {}
_cache: dict[Path, tuple[etree.XMLSchema, threading.Lock]] = {}
_cache_lock = threading.Lock()
#: How many schema errors a reason lists before "and N more".
_SHOWN = 3


def _defaults() -> dict[str, Path]:
    found: dict[str, Path] = {}
    ubl = XSD_ROOT / "ubl-2.1" / "maindoc"
    if ubl.is_dir():
        for xsd in ubl.glob("UBL-*-2.1.xsd"):
            found[f"ubl-2.1:{xsd.name[4:-8]}"] = xsd
    cii = XSD_ROOT / "cii-d16b" / "CrossIndustryInvoice_100pD16B.xsd"
    if cii.exists():
        found["cii-d16b"] = cii
    fx = XSD_ROOT / "factur-x"
    for profile, name in (("minimum", "MINIMUM"), ("basicwl", "BASICWL"), ("basic", "BASIC"),
                          ("en16931", "EN16931"), ("extended", "EXTENDED")):
        xsd = fx / f"facturx-{profile}" / f"Factur-X_{name}.xsd"
        if xsd.exists():
            found[f"factur-x:{profile}"] = xsd
    for profile in ("basic", "comfort", "extended"):
        xsd = fx / f"orderx-{profile}" / "SCRDMCCBDACIOMessageStructure_100pD20B.xsd"
        if xsd.exists():
            found[f"order-x:{profile}"] = xsd
    zugferd = fx / "zugferd" / "ZUGFeRD1p0.xsd"
    if zugferd.exists():
        found["zugferd-1"] = zugferd
    return found


def register_schema(key: str, path: Path) -> None:
    """Validate documents of kind ``key`` against the XSD at ``path`` (its imports beside it)."""
    _known()[key] = Path(path)


def schema_path(key: str | None) -> Path | None:
    """The root XSD registered for ``key``, or None when documents of that kind are not
    validated."""
    if key is None:
        return None
    return _known().get(key)


def known_schemas() -> dict[str, Path]:
    """Every registered key and its root XSD."""
    return dict(_known())


def _known() -> dict[str, Path]:
    if not _registry:
        _registry.update(_defaults())
    return _registry


class _LocalOnly(etree.Resolver):  # type: ignore[misc]  # lxml has no type information
    """Refuses every remote location an XSD import or include may name."""

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        if system_url and system_url.split(":", 1)[0].lower() in ("http", "https", "ftp"):
            raise XmlError(f"schema import of {system_url} refused: schemas are read from "
                           "local files only", stage="validate")
        return None  # a local file: libxml2 reads it


def load_schema(path: Path) -> etree.XMLSchema:
    """The compiled schema at ``path``, compiled on first use and kept."""
    return _load(Path(path))[0]


def _load(path: Path) -> tuple[etree.XMLSchema, threading.Lock]:
    path = path.resolve()
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        parser = etree.XMLParser(resolve_entities="internal", no_network=True, load_dtd=False,
                                 huge_tree=False)
        parser.resolvers.add(_LocalOnly())
        try:
            schema = etree.XMLSchema(etree.parse(str(path), parser))
        except (etree.XMLSchemaParseError, etree.XMLSyntaxError, OSError) as exc:
            raise XmlError(f"the schema {path.name} cannot be loaded: {exc}",
                           stage="validate") from exc
        # One validation at a time per schema: a libxml2 validation context is not shared.
        cached = _cache[path] = (schema, threading.Lock())
        return cached


def validate(tree: etree._ElementTree | etree._Element, key: str | None) -> bool:
    """Validate against the schema registered for ``key``; False when none is registered.

    Raises ``XmlError`` with stage ``validate``: the reason names the element and the
    schema's complaint, the position the line of the first error.
    """
    path = schema_path(key)
    if path is None:
        return False
    schema, lock = _load(path)
    with lock:
        ok = schema.validate(tree)
        errors = list(schema.error_log) if not ok else []
    if ok:
        return True
    first = errors[0]
    shown = "; ".join(f"line {e.line}: {_message(e)}" for e in errors[:_SHOWN])
    more = f" (and {len(errors) - _SHOWN} more)" if len(errors) > _SHOWN else ""
    element = _element_of(first.message)
    raise XmlError(f"not valid against {path.name}: {shown}{more}", stage="validate",
                   position=Position(line=first.line or None, column=first.column or None,
                                     element=element))


def _message(error: etree._LogEntry) -> str:
    message: str = error.message
    return message.replace("{urn:oasis:names:specification:ubl:schema:xsd:", "{ubl:")


def _element_of(message: str) -> str | None:
    # libxml2 starts with "Element '{namespace}Name': …" or "Element 'Name', attribute …".
    if message.startswith("Element '"):
        name = message[len("Element '"):].split("'", 1)[0]
        return name.rsplit("}", 1)[-1]
    return None


# -- UBL code lists -------------------------------------------------------------------------
#
# UBL 2.1 validates in two steps: the XSD, then the values of coded elements against the
# default genericode lists of the release (cl/gc/default). edigw checks the lists whose
# values every UBL profile shares: ISO 4217 currencies, ISO 3166 countries, UN/ECE channel
# codes (communication means), document status and transport mode. It does not check unit
# codes (EN 16931 and Peppol allow UN/ECE Recommendation 21 package codes such as XBX that
# the 2013 list lacks) nor payment means (UNCL 4461 code 58, SEPA credit transfer, came
# later): a newer profile's valid value must not be refused by an older list.

_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
CODE_LIST_ROOT = XSD_ROOT / "ubl-2.1" / "cl" / "gc" / "default"
_code_lists: dict[str, frozenset[str]] = {}
#: Local names of cbc elements bound to a list (``*CurrencyCode`` is matched by suffix).
_ELEMENT_LISTS = {"ChannelCode": "ChannelCode", "DocumentStatusCode": "DocumentStatusCode",
                  "TransportModeCode": "TransportModeCode"}


def code_list(name: str) -> frozenset[str]:
    """The codes of the UBL 2.1 default genericode list ``name`` (``CurrencyCode``)."""
    codes = _code_lists.get(name)
    if codes is None:
        path = CODE_LIST_ROOT / f"{name}-2.1.gc"
        tree = etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
        codes = frozenset(
            (v.text or "").strip()
            for v in tree.iterfind(".//Row/Value[@ColumnRef='code']/SimpleValue"))
        _code_lists[name] = codes
    return codes


def check_code_lists(root: etree._Element) -> None:
    """Check a UBL document's coded values against the shared UBL 2.1 default code lists;
    ``XmlError`` (stage ``validate``) names the first wrong value, its element and line."""
    if not CODE_LIST_ROOT.is_dir():
        return
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        currency = element.get("currencyID")
        if currency is not None and currency.strip() not in code_list("CurrencyCode"):
            _wrong(element, "CurrencyCode", currency, "@currencyID")
        qname = etree.QName(element)
        if qname.namespace != _CBC:
            continue
        name = qname.localname
        listed = _ELEMENT_LISTS.get(name)
        if listed is None and name.endswith("CurrencyCode"):
            listed = "CurrencyCode"
        elif listed is None and name == "IdentificationCode":
            parent = element.getparent()
            if parent is not None and etree.QName(parent).localname == "Country":
                listed = "CountryIdentificationCode"
        if listed is not None:
            value = (element.text or "").strip()
            if value not in code_list(listed):
                _wrong(element, listed, value, None)


def _wrong(element: etree._Element, listed: str, value: str, attribute: str | None) -> None:
    name = etree.QName(element).localname + (f"/{attribute}" if attribute else "")
    raise XmlError(f"{name} {value!r} is not in the UBL 2.1 {listed} code list",
                   stage="validate", position=Position(line=element.sourceline, element=name))
