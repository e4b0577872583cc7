"""ISO 6523 party identifiers (Peppol participant schemes) name partners: UBL and CII
senders given as ``schemeID="0192"`` (or 0208, 0088, 0009, 0002, 9957 …) are matched against
a profile's ``iso6523`` list, or its ``gln``/``siret``/``siren``/``vat`` where the code means
the same; the Peppol form ``iso6523-actorid-upis::0192:…`` is accepted; a malformed id
(wrong GLN, SIREN or SIRET check digit, unknown code) matches nobody and the quarantine
reason says so; ``check-config`` refuses one in a profile.

The documents are the repository's own UBL and CII samples with the seller's (or buyer's)
identifiers replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import Identifiers, Partner, PartnerDirectory, load_partners, partner_toml
from gateway.core import iso6523
from gateway.core.errors import ConfigError, UnknownPartner
from gateway.core.identify import identify
from gateway.core.iso6523_codes import CODES
from gateway.core.ports import Sender
from gateway.core.senders import UnknownSender, senders_in
from gateway.formats.mapping import MappingSet
from gateway.formats.xml.reader import XmlReader

ROOT = Path(__file__).resolve().parents[2]
XML = ROOT / "mappings" / "xml"
NO_ORG = "987654321"      # a Norwegian organisation number (NO:ORG)
BE_EN = "0202239951"      # a Belgian enterprise number (BE:EN)


@pytest.fixture(scope="module")
def reader() -> XmlReader:
    return XmlReader(MappingSet.load(ROOT / "mappings"))


def ubl_invoice(code: str, value: str, legal: tuple[str, str] | None = None) -> bytes:
    """The UBL invoice sample whose seller is named only by ``code``/``value`` (EndpointID
    and PartyIdentification), and by ``legal`` as PartyLegalEntity/CompanyID if given: its
    GLN, SIRET, SIREN and VAT id taken out."""
    data = (XML / "ubl-invoice.sample.xml").read_bytes()
    seller, rest = data.split(b"</cac:AccountingSupplierParty>", 1)
    for old, new in (
            (b'<cbc:EndpointID schemeID="0088">3012345000017</cbc:EndpointID>',
             f'<cbc:EndpointID schemeID="{code}">{value}</cbc:EndpointID>'.encode()),
            (b'<cbc:ID schemeID="0009">73282932000074</cbc:ID>',
             f'<cbc:ID schemeID="{code}">{value}</cbc:ID>'.encode()),
            (b"<cbc:CompanyID>FR44732829320</cbc:CompanyID>", b"<cbc:CompanyID/>"),
            (b'<cbc:CompanyID schemeID="0002">732829320</cbc:CompanyID>',
             f'<cbc:CompanyID schemeID="{legal[0]}">{legal[1]}</cbc:CompanyID>'.encode()
             if legal else b"")):
        assert old in seller, old
        seller = seller.replace(old, new)
    return seller + b"</cac:AccountingSupplierParty>" + rest


def ubl_order(scheme_id: str, value: str) -> bytes:
    """The Peppol BIS order sample whose buyer (the sender) is named by ``value`` in
    ``scheme_id``, its GLN, SIREN and VAT id taken out."""
    data = (XML / "ubl-order.sample.xml").read_bytes()
    buyer, rest = data.split(b"</cac:BuyerCustomerParty>", 1)
    for old, new in ((b'<cbc:EndpointID schemeID="0088">3012345000024</cbc:EndpointID>',
                      f'<cbc:EndpointID schemeID="{scheme_id}">{value}</cbc:EndpointID>'.encode()),
                     (b'<cbc:ID schemeID="0088">3012345000024</cbc:ID>', b"<cbc:ID>A1</cbc:ID>"),
                     (b"<cbc:CompanyID>FR61552100554</cbc:CompanyID>", b"<cbc:CompanyID/>"),
                     (b'<cbc:CompanyID schemeID="0002">552100554</cbc:CompanyID>', b"")):
        assert old in buyer, old
        buyer = buyer.replace(old, new)
    return buyer + b"</cac:BuyerCustomerParty>" + rest


def cii_invoice(code: str, value: str) -> bytes:
    """The CII invoice sample whose seller is named by ``code``/``value`` (GlobalID and legal
    organisation id), its GLN, SIREN and VAT id taken out."""
    data = (XML / "cii-invoice.sample.xml").read_bytes()
    seller, rest = data.split(b"</ram:SellerTradeParty>", 1)
    for old, new in ((b'<ram:GlobalID schemeID="0088">3760123450003</ram:GlobalID>',
                      f'<ram:GlobalID schemeID="{code}">{value}</ram:GlobalID>'.encode()),
                     (b'<ram:ID schemeID="0002">987654324</ram:ID>',
                      f'<ram:ID schemeID="{code}">{value}</ram:ID>'.encode()),
                     (b'<ram:ID schemeID="VA">FR14987654324</ram:ID>', b"<ram:ID/>")):
        assert old in seller, old
        seller = seller.replace(old, new)
    return seller + b"</ram:SellerTradeParty>" + rest


def partner(**ids: list[str]) -> PartnerDirectory:
    return PartnerDirectory([Partner(id="nord", name="Nord AS", identifiers=Identifiers(**ids)),
                             Partner(id="other", name="Other",
                                     identifiers=Identifiers(gln=["4012345000009"]))])


def nobody() -> str:
    return "no sender"


def who(reader: XmlReader, data: bytes, partners: PartnerDirectory) -> str:
    payload = reader.parse(data, filename="in.xml")
    return identify(partners, payload.senders, None, nobody).id


def test_ubl_invoice_whose_seller_is_a_0192_participant_is_its_partners(reader):
    """Before: the 0192 ids were dropped and the invoice was quarantined naming nobody."""
    data = ubl_invoice("0192", NO_ORG)
    payload = reader.parse(data, filename="in.xml")
    assert payload.senders == [Sender(f"0192:{NO_ORG}", "iso6523")]
    assert who(reader, data, partner(iso6523=[f"0192:{NO_ORG}"])) == "nord"
    # the Peppol participant form in the profile is the same identifier
    assert who(reader, data, partner(iso6523=[f"iso6523-actorid-upis::0192:{NO_ORG}"])) == "nord"


@pytest.mark.parametrize(("code", "value", "profile"), [
    ("0208", BE_EN, {"iso6523": [f"0208:{BE_EN}"]}),
    ("0088", "5401234000012", {"gln": ["5401234000012"]}),        # 0088 is a GLN
    ("0088", "5401234000012", {"iso6523": ["0088:5401234000012"]}),
    ("0009", "73282932000074", {"siret": ["73282932000074"]}),    # 0009 is a SIRET
    ("0002", "732829320", {"siren": ["732829320"]}),              # 0002 is a SIREN
    ("0002", "732829320", {"iso6523": ["0002:732 829 320"]}),
    ("0002", "73282932000074", {"siret": ["73282932000074"]}),    # 14 digits: a SIRET
    ("9957", "FR44732829320", {"vat": ["FR 44 732829320"]}),       # 9957 a French VAT id
    ("0007", "2120000787", {"iso6523": ["0007:2120000787"]}),
    ("NO:ORG", NO_ORG, {"iso6523": [f"0192:{NO_ORG}"]}),           # a Peppol scheme id
])
def test_ubl_invoice_seller_in_an_icd_scheme_names_the_profile_declaring_it(
        reader, code, value, profile):
    assert who(reader, ubl_invoice(code, value), partner(**profile)) == "nord"


def test_peppol_bis_order_buyer_given_in_the_participant_form(reader):
    """A buyer EndpointID in scheme iso6523-actorid-upis (value ICD:id), and one in 0208."""
    partners = partner(iso6523=[f"iso6523-actorid-upis::0208:{BE_EN}"])
    assert who(reader, ubl_order("iso6523-actorid-upis", f"0208:{BE_EN}"), partners) == "nord"
    assert who(reader, ubl_order("0208", BE_EN), partners) == "nord"


def test_cii_invoice_seller_with_a_0208_id_names_its_partner(reader):
    data = cii_invoice("0208", BE_EN)
    payload = reader.parse(data, filename="in.xml")
    assert payload.senders[0] == Sender(f"0208:{BE_EN}", "iso6523")
    assert who(reader, data, partner(iso6523=[f"0208:{BE_EN}"])) == "nord"


def test_unknown_icd_sender_is_quarantined_naming_the_scheme_in_words(reader):
    """The reason names '0192 (NO:ORG) 987654321'; core.senders reads it back as the
    sender to adopt, whose key round-trips."""
    with pytest.raises(UnknownPartner) as exc:
        who(reader, ubl_invoice("0192", NO_ORG), partner(gln=["5401234000012"]))
    reason = str(exc.value)
    assert f"0192 (NO:ORG) {NO_ORG}" in reason
    (named,) = senders_in(reason)
    assert named == UnknownSender("iso6523", f"0192:{NO_ORG}")
    assert named.key == f"iso6523:0192:{NO_ORG}"
    assert UnknownSender.from_key(named.key) == named
    assert named.label == f"ISO 6523 0192 (NO:ORG) {NO_ORG}"


def test_a_malformed_siret_matches_nobody_and_the_reason_says_why(reader):
    """A SIRET with a wrong Luhn check digit is not matched even by a profile listing it:
    reported (and not offered for adoption, since no profile could hold it)."""
    bad = "73282932000075"
    partners = partner(siret=[bad])
    with pytest.raises(UnknownPartner) as exc:
        who(reader, ubl_invoice("0009", bad), partners)
    reason = str(exc.value)
    assert f"siret {bad} (malformed: wrong SIRET check digit" in reason
    assert senders_in(reason) == []
    with pytest.raises(UnknownPartner) as exc:  # beside a valid unknown id: that one is named
        who(reader, ubl_invoice("0009", bad, legal=("0192", NO_ORG)), partners)
    assert senders_in(str(exc.value)) == [UnknownSender("iso6523", f"0192:{NO_ORG}")]
    assert "malformed" in str(exc.value)
    with pytest.raises(UnknownPartner) as exc:  # a wrong GLN check digit given as 0088
        who(reader, ubl_invoice("0088", "5401234000013"), partner(gln=["5401234000013"]))
    assert "gln 5401234000013 (malformed: wrong GLN check digit)" in str(exc.value)


def test_iso6523_senders_given_directly_are_checked_before_lookup():
    """An unknown code or a malformed value in the ICD form names nobody, in words."""
    partners = partner(iso6523=[f"0192:{NO_ORG}"])
    assert identify(partners, [Sender(f"iso6523-actorid-upis::0192:{NO_ORG}", "iso6523")],
                    None, nobody).id == "nord"
    with pytest.raises(UnknownPartner) as exc:
        identify(partners, [Sender("1234:5", "iso6523"), Sender("0009:123", "iso6523")],
                 None, nobody)
    reason = str(exc.value)
    assert "iso6523 1234:5 (malformed: unknown ICD code 1234" in reason
    assert "0009 (FR:SIRET) 123 (malformed: a SIRET is 14 digits)" in reason
    assert senders_in(reason) == []


def test_the_code_list_and_the_checks():
    """The table holds the Peppol list (with its removed codes); GLN, SIREN and SIRET check
    digits are verified, La Poste's SIRETs by their own rule."""
    for code, sid in (("0002", "FR:SIRENE"), ("0007", "SE:ORGNR"), ("0009", "FR:SIRET"),
                      ("0060", "DUNS"), ("0088", "GLN"), ("0106", "NL:KVK"),
                      ("0151", "AU:ABN"), ("0183", "CH:UIDB"), ("0184", "DK:DIGST"),
                      ("0192", "NO:ORG"), ("0195", "SG:UEN"), ("0204", "DE:LWID"),
                      ("0208", "BE:EN"), ("0211", "IT:IVA"), ("0221", "JP:IIN"),
                      ("0230", "MY:EIF"), ("9901", "DK:CPR"), ("9957", "FR:VAT")):
        assert iso6523.scheme_name(code) == sid
    assert CODES["0037"][1] == "removed" and CODES["0088"][1] == "active"
    assert iso6523.split(f"ISO6523-ACTORID-UPIS::0192: {NO_ORG} ") == ("0192", NO_ORG)
    assert iso6523.canonical("0002:73282932000074") == ("siret", "73282932000074")
    assert iso6523.canonical("9957:fr44732829320") == ("vat", "FR44732829320")
    assert iso6523.canonical(f"0208:{BE_EN}") == ("iso6523", f"0208:{BE_EN}")
    assert iso6523.check("0009", "35600000000048") == "35600000000048"  # La Poste, Luhn
    assert iso6523.check("0009", "35600000012346") == "35600000012346"  # its branches: sum
    with pytest.raises(iso6523.Malformed):
        iso6523.check("0009", "35600000012345")
    for text, why in (("0088:5401234000013", "check digit"), ("0002:732829321", "Luhn"),
                      ("0192", "ICD:value"), ("88:1", "4 digits"), ("0001:x", "unknown"),
                      ("9957:44732829320", "French VAT"), ("0192: ", "empty")):
        with pytest.raises(iso6523.Malformed, match=why):
            iso6523.split(text)


def test_profiles_declare_iso6523_ids_and_check_config_refuses_bad_ones(tmp_path):
    """Loaded profiles keep ICD:value (the Peppol form normalised), written back the same;
    an unknown code or a malformed value is refused naming the file and the key."""
    folder = tmp_path / "partners"
    folder.mkdir()
    (folder / "nord.toml").write_text(
        'id = "nord"\nname = "Nord AS"\n[identifiers]\n'
        f'iso6523 = ["iso6523-actorid-upis::0192:{NO_ORG}", "0088:5401234000012"]\n')
    directory = load_partners(folder, env={})
    nord = directory.get("nord")
    assert nord is not None
    assert nord.identifiers.iso6523 == [f"0192:{NO_ORG}", "0088:5401234000012"]
    assert f'iso6523 = ["0192:{NO_ORG}", "0088:5401234000012"]' in partner_toml(nord)
    assert directory.by_identifier("gln", "5401234000012") is nord
    assert directory.by_identifier("iso6523", f"0192:{NO_ORG}") is nord
    for bad, why in (("1234:5", "unknown ICD code 1234"),
                     ("0009:73282932000075", "wrong SIRET check digit")):
        (folder / "nord.toml").write_text(
            f'id = "nord"\nname = "Nord AS"\n[identifiers]\niso6523 = ["{bad}"]\n')
        with pytest.raises(ConfigError) as exc:
            load_partners(folder, env={}, strict=True)
        assert exc.value.file == str(folder / "nord.toml")
        assert exc.value.key == "identifiers.iso6523.0" and why in exc.value.reason


def test_check_config_command_names_the_file_and_key_of_an_unknown_icd(tmp_path, monkeypatch):
    (tmp_path / "partners").mkdir()
    (tmp_path / "gateway.toml").write_text(
        f'mappings = "{ROOT / "mappings"}"\npartners = "partners"\n'
        '[store]\nurl = "sqlite:///var/edigw.sqlite3"\n'
        '[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/%2F"\n')
    (tmp_path / "partners" / "nord.toml").write_text(
        'id = "nord"\nname = "Nord AS"\n[identifiers]\niso6523 = ["0192:1", "9999:12"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDIGW_STORE_URL", raising=False)
    monkeypatch.delenv("EDIGW_BROKER_URL", raising=False)
    r = CliRunner().invoke(main, ["--config", "gateway.toml", "check-config"])
    assert r.exit_code == 2, r.output
    assert "nord.toml: partner nord disabled: identifiers.iso6523.1" in r.output
    assert "unknown ICD code 9999" in r.output
