"""Partner administration: each change rewrites the profile atomically with ``${VAR}`` kept,
keeps secrets in 0600 files and out of the audit trail, refuses bad values leaving the file
untouched, and hands the reloaded directory to ``on_change``."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.channels.sms import admin as phones
from gateway.config import GatewaySettings, PartnerDirectory, load_partners
from gateway.store.audit import MASK, AuditLog
from gateway.store.db import Store
from gateway.web.partners_admin import Conflict, Invalid, NotFound, PartnerAdmin
from tests.as2_keys import NOT_AFTER, loopback_pair
from tests.conftest import ROOT

ENV = {"ACME_SFTP_PASSWORD": "env-secret-pw", "PATH": "/usr/bin"}

ACME = """\
# a comment that a rewrite loses
id = "acme"
name = "ACME Retail"
channels = ["folder", "sftp", "email"]

[identifiers]
unb = [{ id = "5412345000013", qualifier = "14" }]
email = ["orders@acme.example"]
phone = ["+33612345678"]

[sftp]
host = "${ACME_SFTP_HOST:-sftp.acme.test}"
user = "edi"
password = "${ACME_SFTP_PASSWORD}"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

[[sftp.inbound]]
folder = "/out"
"""

BETA = """\
id = "beta"
name = "Beta Foods"
channels = ["sms"]

[identifiers]
phone = ["+33699887766"]
email = ["edi@beta.example"]
"""


@pytest.fixture
def world(tmp_path):
    partners = tmp_path / "partners"
    partners.mkdir()
    (partners / "acme.toml").write_text(ACME, encoding="utf-8")
    (partners / "beta.toml").write_text(BETA, encoding="utf-8")
    # Our AS2 identity and an SMTP server: check-config wants them for partners with [as2]
    # and mail acknowledgements, and every change is judged as check-config would.
    pair = loopback_pair()
    settings = GatewaySettings.model_validate(
        {"partners": str(partners), "mappings": str(ROOT / "mappings"),
         "smtp": {"host": "127.0.0.1"},
         "as2": {"identities": [{"as2_id": "as2server", "passphrase": "test",
                                 "key_file": str(pair / "server_private.pem")}]}})
    store = Store.from_url(f"sqlite:///{tmp_path / 'edigw.sqlite3'}")
    seen: list[PartnerDirectory] = []
    admin = PartnerAdmin(settings, audit=AuditLog(store), on_change=seen.append,
                         secrets_dir=tmp_path / "secrets", certs_dir=tmp_path / "certs",
                         env=ENV)
    yield admin, seen, tmp_path
    store.close()


def raw(tmp_path: Path, pid: str = "acme") -> dict:
    return tomllib.loads((tmp_path / "partners" / f"{pid}.toml").read_text(encoding="utf-8"))


def test_get_shows_defaults_with_secrets_masked(world):
    """A profile comes with its defaults; the password from the environment is stars."""
    admin, _, _ = world
    shown = admin.get("acme")
    assert shown["sftp"]["password"] == MASK and "env-secret-pw" not in str(shown)
    assert shown["edifact"]["contrl"] == "requested" and shown["enabled"] is True
    assert [p["id"] for p in admin.list()] == ["acme", "beta"]
    with pytest.raises(NotFound):
        admin.get("nobody")
    with pytest.raises(NotFound):
        admin.get("../etc")


def test_disable_and_enable_rewrite_the_file_keeping_env_references(world):
    """Disabling writes enabled = false; ${VAR} references stay unexpanded; comments go."""
    admin, seen, tmp = world
    admin.disable("marie", "acme", remote="10.0.0.7")
    data = raw(tmp)
    assert data["enabled"] is False
    assert data["sftp"]["password"] == "${ACME_SFTP_PASSWORD}"
    assert data["sftp"]["host"] == "${ACME_SFTP_HOST:-sftp.acme.test}"
    assert "a comment" not in (tmp / "partners" / "acme.toml").read_text()
    assert seen[-1].get("acme").enabled is False
    admin.enable("marie", "acme")
    assert "enabled" not in raw(tmp) and seen[-1].get("acme").enabled is True
    entries = admin.audit.list(target="partner:acme")
    assert [(e.action, e.before, e.after) for e in entries] == [
        ("partner.enable", {"enabled": False}, {"enabled": True}),
        ("partner.disable", {"enabled": True}, {"enabled": False})]
    assert entries[1].actor == "marie" and entries[1].remote == "10.0.0.7"
    assert not list((tmp / "partners").glob(".*"))  # no temporary file left


def test_a_change_that_changes_nothing_is_not_written_nor_audited(world):
    """Enabling an enabled partner leaves the file (and its comments) alone."""
    admin, seen, tmp = world
    admin.enable("marie", "acme")
    assert "a comment" in (tmp / "partners" / "acme.toml").read_text()
    assert admin.audit.list() == [] and seen == []


def test_create_writes_a_loadable_profile_and_refuses_taken_ids(world):
    """A new account loads like any profile; an existing id or another's UNB id is refused."""
    admin, seen, tmp = world
    shown = admin.create("admin", "gamma", "Gamma SA", unb=["5400000000001"],
                         gln=["5400000000001"], emails=["EDI@gamma.example"])
    assert shown["identifiers"]["email"] == ["EDI@gamma.example"]
    assert load_partners(tmp / "partners", ENV).get("gamma").name == "Gamma SA"
    assert seen[-1].get("gamma") is not None
    [entry] = admin.audit.list(action="partner.create")
    assert entry.after["name"] == "Gamma SA"
    with pytest.raises(Conflict):
        admin.create("admin", "gamma", "Again")
    with pytest.raises(Conflict) as exc:
        admin.create("admin", "delta", "Delta", unb=[{"id": "5412345000013", "qualifier": "14"}])
    assert (exc.value.field, exc.value.owner) == ("unb", "acme")
    assert not (tmp / "partners" / "delta.toml").exists()
    with pytest.raises(Invalid):
        admin.create("admin", "Bad Id!", "x")
    with pytest.raises(Invalid) as bad:
        admin.create("admin", "epsilon", "Eps", gln=["123"])
    assert bad.value.field.startswith("identifiers.gln")
    assert not (tmp / "partners" / "epsilon.toml").exists()


def test_set_contacts_changes_addresses_and_refuses_another_partners_address(world):
    """Addresses and reply-to are replaced; an address of another partner is a conflict."""
    admin, _, tmp = world
    admin.set_contacts("marie", "acme", emails=["new@acme.example", "orders@acme.example"],
                       reply_to=["edi-replies@acme.example"], name="ACME Retail SA")
    data = raw(tmp)
    assert data["identifiers"]["email"] == ["new@acme.example", "orders@acme.example"]
    assert data["email"]["reply_to"] == ["edi-replies@acme.example"]
    [entry] = admin.audit.list()
    assert entry.before["emails"] == ["orders@acme.example"]
    assert entry.after["name"] == "ACME Retail SA"
    before = (tmp / "partners" / "acme.toml").read_bytes()
    with pytest.raises(Conflict):
        admin.set_contacts("marie", "acme", emails=["EDI@beta.example"])
    with pytest.raises(Invalid):
        admin.set_contacts("marie", "acme", emails=["not an address"])
    assert (tmp / "partners" / "acme.toml").read_bytes() == before


def test_sftp_password_goes_to_a_0600_file_never_to_the_profile_nor_the_audit(world):
    """The password is written to the secrets folder (0700/0600); the profile points to it."""
    admin, seen, tmp = world
    shown = admin.set_sftp_password("admin", "acme", "n3w-Passw0rd")
    secret = tmp / "secrets" / "acme" / "sftp-password"
    assert secret.read_text() == "n3w-Passw0rd"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp / "secrets").stat().st_mode) == 0o700
    text = (tmp / "partners" / "acme.toml").read_text()
    assert "n3w-Passw0rd" not in text and "password =" not in text
    assert raw(tmp)["sftp"]["password_file"] == str(secret)
    assert seen[-1].get("acme").sftp.password_value() == "n3w-Passw0rd"
    assert "n3w-Passw0rd" not in str(shown)
    [entry] = admin.audit.list()
    assert entry.before["password"] == MASK and entry.after["password"] is None
    assert entry.after["password_file"] == str(secret)
    admin.set_sftp_password("admin", "acme", "rotated-again")  # same file, still audited
    assert secret.read_text() == "rotated-again" and len(admin.audit.list()) == 2
    with pytest.raises(Invalid):
        admin.set_sftp_password("admin", "acme", "  ")
    with pytest.raises(Invalid):
        admin.set_sftp_password("admin", "beta", "x")  # no [sftp] section


def test_sftp_key_with_passphrase_is_checked_stored_decrypted_0600_and_masked(world):
    """An encrypted key is opened with its passphrase, stored for paramiko in a 0600 file;
    a wrong passphrase or a non-key is refused and nothing changes."""
    import paramiko

    admin, _, tmp = world
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.BestAvailableEncryption(b"open sesame")).decode()
    before = (tmp / "partners" / "acme.toml").read_bytes()
    with pytest.raises(Invalid):
        admin.set_sftp_key("admin", "acme", pem, "wrong")
    with pytest.raises(Invalid):
        admin.set_sftp_key("admin", "acme", pem)
    with pytest.raises(Invalid):
        admin.set_sftp_key("admin", "acme", "-----BEGIN GARBAGE-----\nabc\n")
    assert (tmp / "partners" / "acme.toml").read_bytes() == before
    shown = admin.set_sftp_key("admin", "acme", pem, "open sesame")
    stored = tmp / "secrets" / "acme" / "sftp-key"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    loaded = paramiko.PKey.from_path(stored)
    assert shown["public_key"] == f"ssh-ed25519 {loaded.get_base64()}"
    assert raw(tmp)["sftp"]["key_file"] == str(stored)
    assert "open sesame" not in (tmp / "partners" / "acme.toml").read_text()
    [entry] = admin.audit.list()
    assert entry.after["key_file"] == str(stored) and "open sesame" not in str(entry.as_dict())
    assert entry.after["fingerprint"].startswith("SHA256:")
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption())
    assert admin.set_sftp_key("admin", "acme", rsa_pem)["public_key"].startswith("ssh-rsa ")


def test_sftp_host_key_is_pinned_and_a_malformed_line_refused(world):
    """A known_hosts line loses its hosts column; a line that is not a key is refused."""
    admin, _, tmp = world
    pub = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    shown = admin.set_sftp_host_key("admin", "acme", f"[sftp.acme.test]:2222 {pub} comment")
    assert raw(tmp)["sftp"]["host_key"] == pub and shown["fingerprint"].startswith("SHA256:")
    [entry] = admin.audit.list()
    assert entry.after["host_key"] == pub and entry.before["host_key"].startswith("ssh-ed25519")
    with pytest.raises(Invalid) as exc:
        admin.set_sftp_host_key("admin", "acme", "ssh-ed25519 not-base64!")
    assert exc.value.field == "host_key" and raw(tmp)["sftp"]["host_key"] == pub


def test_as2_certificate_upload_pem_then_der_rotates_and_garbage_is_refused(world):
    """The loopback certificates (PEM, then DER) become first of [as2] certificates, the
    previous staying second; a private key bundle and garbage are refused."""
    fixtures = loopback_pair()
    admin, seen, tmp = world
    with pytest.raises(Invalid):
        admin.upload_as2_certificate("admin", "acme", (fixtures / "client_public.pem").read_bytes())
    shown = admin.upload_as2_certificate("admin", "acme",
                                         (fixtures / "client_public.pem").read_bytes(),
                                         as2_id="ACMEAS2")
    assert shown["certificate"]["subject"] == "CN=as2client"
    assert shown["certificate"]["not_after"].startswith(NOT_AFTER.date().isoformat())
    first = Path(shown["certificate"]["file"])
    assert first.parent == tmp / "certs" / "acme" and first.exists()
    from cryptography import x509

    der = x509.load_pem_x509_certificate((fixtures / "server_public.pem").read_bytes()
                                         ).public_bytes(serialization.Encoding.DER)
    second = admin.upload_as2_certificate("admin", "acme", der)
    assert raw(tmp)["as2"]["certificates"] == [second["certificate"]["file"], str(first)]
    from gateway.channels.as2.keys import load_partner_certificates

    certs = load_partner_certificates(seen[-1].get("acme").as2)
    assert [c.subject.rfc4514_string() for c in certs] == ["CN=as2server", "CN=as2client"]
    entries = admin.audit.list(action="partner.as2-certificate")
    assert entries[0].after["subject"] == "CN=as2server"
    assert entries[0].before["certificates"] == [str(first)]
    before = (tmp / "partners" / "acme.toml").read_bytes()
    for bad in (b"garbage", (fixtures / "client_private.pem").read_bytes()):
        with pytest.raises(Invalid):
            admin.upload_as2_certificate("admin", "acme", bad)
    assert (tmp / "partners" / "acme.toml").read_bytes() == before
    with pytest.raises(Conflict):  # the AS2 id belongs to acme now
        admin.upload_as2_certificate("admin", "beta", der, as2_id="ACMEAS2")


def test_phones_are_normalised_to_e164_unique_and_removed_however_written(world):
    """A national number becomes E.164 (region FR); another partner's number conflicts."""
    admin, _, tmp = world
    phones.add_phone(admin, "admin", "acme", "06 11 22 33 44")
    assert raw(tmp)["identifiers"]["phone"] == ["+33612345678", "+33611223344"]
    phones.add_phone(admin, "admin", "acme", "+33 6 11 22 33 44")  # already there: nothing
    assert len(admin.audit.list()) == 1
    with pytest.raises(Conflict) as exc:
        phones.add_phone(admin, "admin", "acme", "0699887766")
    assert exc.value.owner == "beta"
    with pytest.raises(Invalid):
        phones.add_phone(admin, "admin", "acme", "12")
    phones.remove_phone(admin, "admin", "acme", "0033612345678")
    assert raw(tmp)["identifiers"]["phone"] == ["+33611223344"]
    [entry, _] = admin.audit.list()
    assert entry.before == {"phones": ["+33612345678", "+33611223344"]}
    with pytest.raises(Invalid):
        phones.remove_phone(admin, "admin", "acme", "0612345678")


def test_documents_name_existing_mappings_of_their_format(world):
    """A mapping must exist and read the document's format."""
    admin, seen, tmp = world
    admin.set_documents("admin", "acme", [{"type": "order", "format": "edifact",
                                           "mapping": "eancom-orders-d96a"},
                                          {"type": "invoice", "format": "xml"}])
    assert raw(tmp)["documents"][0]["mapping"] == "eancom-orders-d96a"
    assert seen[-1].get("acme").mapping_for("order") == "eancom-orders-d96a"
    before = (tmp / "partners" / "acme.toml").read_bytes()
    with pytest.raises(Invalid) as exc:
        admin.set_documents("admin", "acme", [{"type": "order", "mapping": "no-such"}])
    assert exc.value.field == "documents[0].mapping"
    with pytest.raises(Invalid):
        admin.set_documents("admin", "acme", [{"type": "order", "format": "csv",
                                               "mapping": "eancom-orders-d96a"}])
    with pytest.raises(Invalid):
        admin.set_documents("admin", "acme", [{"type": "catalogue"}])
    assert (tmp / "partners" / "acme.toml").read_bytes() == before


def test_acknowledgement_wishes(world):
    """CONTRL policy and mail acknowledgements change; an unknown CONTRL policy is refused."""
    admin, _, tmp = world
    admin.set_acknowledgements("admin", "acme", contrl="always", email_acknowledgements=True)
    data = raw(tmp)
    assert data["edifact"]["contrl"] == "always" and data["email"]["acknowledgements"] is True
    [entry] = admin.audit.list()
    assert entry.before["contrl"] is None and entry.after["contrl"] == "always"
    with pytest.raises(Invalid) as exc:
        admin.set_acknowledgements("admin", "acme", contrl="sometimes")
    assert exc.value.field == "edifact.contrl"
    assert raw(tmp)["edifact"]["contrl"] == "always"


def test_unknown_partner_is_not_found(world):
    """Every change names an existing partner."""
    admin, _, _ = world
    with pytest.raises(NotFound):
        admin.disable("admin", "nobody")
    with pytest.raises(NotFound):
        phones.add_phone(admin, "admin", "nobody", "0611223344")


def test_environment_references_given_through_the_console_are_refused(world):
    """"${VAR}" typed into the console would be expanded from the gateway's environment and
    shown back to every viewer (another partner's secret): refused, the file untouched;
    references already in the file stay (the reviewer's finding)."""
    admin, _, tmp = world
    before = (tmp / "partners" / "acme.toml").read_bytes()
    secret = next(iter(ENV))
    for attempt in (lambda: admin.set_contacts("mallory", "acme", name="${" + secret + "}"),
                    lambda: admin.set_contacts("mallory", "acme",
                                               emails=["${" + secret + "}@x.example"]),
                    lambda: admin.create("mallory", "gamma", "${" + secret + "}")):
        with pytest.raises(Invalid) as refused:
            attempt()
        assert "environment references" in str(refused.value)
    assert (tmp / "partners" / "acme.toml").read_bytes() == before
    assert not (tmp / "partners" / "gamma.toml").exists()
    assert all(ENV[secret] not in str(e.as_dict()) for e in admin.audit.list())
    admin.set_contacts("marie", "acme", name="ACME (renamed)")  # the file's own ${…} kept
    assert b"${" in (tmp / "partners" / "acme.toml").read_bytes()
