"""Certificate validity: our AS2 identities' and partners' certificates judged, recorded in
the store, read back; an unreadable file is reported, never fatal."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.channels.as2.certificates import certificate_statuses, check_certificates, validity
from gateway.channels.as2.settings import As2Identity, As2Settings
from gateway.config import Partner, PartnerAs2, PartnerDirectory
from gateway.store.db import Store

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Keys and self-signed certificates, (key, certificate) by name. Built with
    cryptography: OpenSSL 3.0's ``req -x509`` cannot set a start date in the past."""
    folder = tmp_path_factory.mktemp("certs")

    def one(name: str, days: int, start_days: int = 0) -> tuple[Path, Path]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW + dt.timedelta(days=start_days))
                .not_valid_after(NOW + dt.timedelta(days=start_days + days))
                .sign(key, hashes.SHA256()))
        key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path

    return {"own": one("own", 365),
            "expiring": one("expiring", 11, -10),  # one day left
            "expired": one("expired", 10, -11),  # expired a day ago
            "future": one("future", 10, 3),  # valid in three days
            "ca": one("ca", 3650)}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield store
    store.close()


def _partner(pid: str, as2_id: str, certificates: list[Path],
             ca: list[Path] | None = None) -> Partner:
    return Partner(id=pid, name=pid, as2=PartnerAs2(as2_id=as2_id, certificates=certificates,
                                                     ca_certificates=ca or []))


def test_each_certificate_judged_and_recorded(store, certs, tmp_path):
    """Own ok; a partner's current certificate expiring (1 day left), its rotation one
    expired, another partner's not yet valid, a CA ok: each with its state, all recorded."""
    as2 = As2Settings(identities=[As2Identity(as2_id="edigw", key_file=certs["own"][0],
                                              certificate_file=certs["own"][1])],
                      certificate_warning_days=30)
    partners = PartnerDirectory([
        _partner("retail", "RETAIL", [certs["expiring"][1], certs["expired"][1]],
                 ca=[certs["ca"][1]]),
        _partner("shop", "SHOP", [certs["future"][1]]),
        Partner(id="plain", name="no AS2"),
    ])

    statuses = {s.id: s for s in check_certificates(as2, partners, store, now=NOW)}

    assert {k: v.state for k, v in statuses.items()} == {
        "as2:own:edigw": "ok", "as2:retail:1": "expiring", "as2:retail:2": "expired",
        "as2:retail:ca:1": "ok", "as2:shop:1": "not-yet-valid"}
    assert statuses["as2:retail:1"].days_left == 0  # under a day left
    assert statuses["as2:retail:1"].owner == "retail"
    assert statuses["as2:retail:2"].days_left == -1
    assert statuses["as2:own:edigw"].subject == "CN=own"
    assert statuses["as2:retail:2"].detail.startswith("expired on")
    recorded = {s.id: s for s in certificate_statuses(store, 30, now=NOW)}
    assert {k: v.state for k, v in recorded.items()} == {k: v.state for k, v in statuses.items()}
    assert recorded["as2:retail:1"].not_after == statuses["as2:retail:1"].not_after


def test_recorded_states_follow_the_clock(store, certs):
    """Read back later, the same record says expired once not_after has passed."""
    partners = PartnerDirectory([_partner("retail", "RETAIL", [certs["expiring"][1]])])
    check_certificates(None, partners, store, now=NOW)
    later = NOW + dt.timedelta(days=3)
    (status,) = certificate_statuses(store, 30, now=later)
    assert (status.id, status.state) == ("as2:retail:1", "expired")


def test_unreadable_files_reported_not_raised(store, certs, tmp_path):
    """A missing file, a file that is no certificate, and a key without its passphrase are
    each 'unreadable' with a reason naming the file; the readable one is still judged."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(certs["own"][0]), "-aes256", "-passout",
                    "pass:right", "-out", str(encrypted)], check=True, capture_output=True)
    as2 = As2Settings(identities=[As2Identity(as2_id="edigw", key_file=encrypted,
                                              certificate_file=certs["own"][1])])
    partners = PartnerDirectory([
        _partner("retail", "RETAIL", [tmp_path / "missing.pem", garbage, certs["own"][1]]),
    ])

    statuses = {s.id: s for s in check_certificates(as2, partners, store, now=NOW)}

    assert {k: v.state for k, v in statuses.items()} == {
        "as2:own:edigw": "unreadable", "as2:retail:1": "unreadable",
        "as2:retail:2": "unreadable", "as2:retail:3": "ok"}
    assert "missing.pem" in statuses["as2:retail:1"].detail
    assert "garbage.pem" in statuses["as2:retail:2"].detail
    assert "passphrase" in statuses["as2:own:edigw"].detail
    assert statuses["as2:retail:1"].not_after is None and statuses["as2:retail:1"].days_left is None
    # Recorded too, so that the tracker sees a certificate nobody can read.
    recorded = {s.id: s for s in certificate_statuses(store, 30, now=NOW)}
    assert {k: v.state for k, v in recorded.items()} == {
        "as2:own:edigw": "unreadable", "as2:retail:1": "unreadable",
        "as2:retail:2": "unreadable", "as2:retail:3": "ok"}
    assert "garbage.pem" in recorded["as2:retail:2"].detail


def test_certificate_removed_from_config_is_no_longer_listed(store, certs):
    """A check after a partner dropped its rotation certificate removes that record."""
    two = PartnerDirectory([_partner("retail", "RETAIL", [certs["own"][1], certs["ca"][1]])])
    check_certificates(None, two, store, now=NOW)
    assert len(certificate_statuses(store, now=NOW)) == 2
    one = PartnerDirectory([_partner("retail", "RETAIL", [certs["own"][1]])])
    check_certificates(None, one, store, now=NOW)
    assert [s.id for s in certificate_statuses(store, now=NOW)] == ["as2:retail:1"]


def test_pkcs12_identity(store, tmp_path):
    """Our identity as a PKCS#12 file (passphrase 'test') is read and judged like a PEM one."""
    from tests.as2_keys import pkcs12_file

    p12 = pkcs12_file(tmp_path / "ours.p12", "mycompany")
    as2 = As2Settings(identities=[As2Identity(as2_id="mycompany", pkcs12_file=p12,
                                              passphrase="test")])
    (status,) = check_certificates(as2, PartnerDirectory([]), store, now=NOW)
    assert status.id == "as2:own:mycompany"
    assert status.state == "ok"
    assert status.not_after is not None and status.subject == "CN=mycompany"


@pytest.mark.parametrize(("offset_days", "state"), [
    (-1, "not-yet-valid"), (5, "ok"), (95, "expiring"), (100, "expired"), (200, "expired")])
def test_validity_boundaries(offset_days, state):
    """Valid from day 0 to day 100, warned 30 days ahead."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    got, _, _ = validity(start, start + dt.timedelta(days=100),
                         start + dt.timedelta(days=offset_days), 30)
    assert got == state
