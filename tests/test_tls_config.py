"""The two forms of ``tls_config``, their federation-file form, and plain text only on loopback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import silo
from silo.config import Address, TLSConfig, parse_config
from silo.endpoints import check_plaintext, check_tls_parties, is_loopback, parse_tls_config
from silo.errors import ConfigError
from silo.federation import load_federation
from silo.log import party_logger
from silo.transport.tls import PeerTrust, certified_names

from _cli_support import make_tls_files, run_silo

FP = "sha256:" + "ab" * 32


def test_tls_config_takes_a_ca_or_fingerprints_never_both() -> None:
    ca = parse_tls_config({"ca_cert": "ca.pem", "cert": "a.pem", "key": "a.key"})
    assert ca == TLSConfig(ca_cert="ca.pem", cert="a.pem", key="a.key")
    spaced = "SHA256:" + ":".join(["AB"] * 32)
    prints = parse_tls_config(
        {"peer_fingerprints": {"bob": spaced}, "cert": "a.pem", "key": "a.key"}
    )
    assert prints is not None and prints.ca_cert is None
    assert prints.peer_fingerprints == {"bob": FP}
    with pytest.raises(ConfigError, match=r"exactly one of 'ca_cert'.*got both"):
        parse_tls_config(
            {"ca_cert": "c", "peer_fingerprints": {"bob": FP}, "cert": "c", "key": "k"}
        )
    with pytest.raises(ConfigError, match=r"exactly one of 'ca_cert'.*got neither"):
        parse_tls_config({"cert": "c", "key": "k"})
    with pytest.raises(
        ConfigError, match=r"peer_fingerprints'\]\['bob'\]: expected 'sha256:' and 64 hex"
    ):
        parse_tls_config({"peer_fingerprints": {"bob": "md5:abcd"}, "cert": "c", "key": "k"})


def test_fingerprints_must_cover_every_peer_and_only_parties() -> None:
    tls = TLSConfig(ca_cert=None, cert="c", key="k", peer_fingerprints={"bob": FP})
    check_tls_parties(tls, ["alice", "bob"], "alice")
    with pytest.raises(ConfigError, match="no fingerprint for 'carol'; every peer needs one"):
        check_tls_parties(tls, ["alice", "bob", "carol"], "alice")
    with pytest.raises(ConfigError, match="'bob' is not a party of this job"):
        check_tls_parties(tls, ["alice", "carol"], "carol")


async def test_a_missing_peer_fingerprint_is_a_config_error_at_init() -> None:
    tls = {"peer_fingerprints": {"alice": FP}, "cert": "c", "key": "k"}
    addresses = {"alice": "127.0.0.1:1", "bob": "127.0.0.1:2"}
    with pytest.raises(ConfigError, match="no fingerprint for 'bob'"):
        await silo.init(addresses, "alice", tls_config=tls)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("127.example.org", False),
        ("alice.example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_allow_plaintext_is_a_validated_top_level_key() -> None:
    assert parse_config({"allow_plaintext": True}).allow_plaintext is True
    assert parse_config(None).allow_plaintext is False
    with pytest.raises(ConfigError, match=r"config\['allow_plaintext'\]: expected true or false"):
        parse_config({"allow_plaintext": "yes"})
    remote = {"alice": Address("10.0.0.1", 1), "bob": Address("127.0.0.1", 2)}
    with pytest.raises(ConfigError, match=r"addresses\['alice'\]: 10.0.0.1:1 is not a loopback"):
        check_plaintext(remote, None, parse_config(None))
    check_plaintext(remote, None, parse_config({"allow_plaintext": True}))
    check_plaintext(remote, TLSConfig(ca_cert="c", cert="c", key="k"), parse_config(None))


async def test_plaintext_with_a_remote_address_fails_before_binding() -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    try:
        # If init bound anything, the held port would make it fail with AddressInUseError.
        with pytest.raises(ConfigError) as info:
            await silo.init({"alice": "10.1.2.3:5000", "bob": f"127.0.0.1:{port}"}, "bob")
    finally:
        held.close()
    assert "addresses['alice']: 10.1.2.3:5000 is not a loopback address" in str(info.value)
    assert "python -m silo certs" in str(info.value)
    assert "allow_plaintext" in str(info.value)


def test_own_certificate_must_name_this_party_and_match_its_fingerprint(tmp_path: Path) -> None:
    issued = {i.party: i for i in make_tls_files(tmp_path, ["alice", "bob"], self_signed=True)}
    log = party_logger("alice", "job")
    bobs = TLSConfig(
        ca_cert=None,
        cert=str(issued["bob"].cert),
        key=str(issued["bob"].key),
        peer_fingerprints={"bob": issued["bob"].fingerprint},
    )
    with pytest.raises(ConfigError, match="names 'bob', not this party 'alice'"):
        PeerTrust(bobs, party="alice", parties=["alice", "bob"], log=log)
    wrong = TLSConfig(
        ca_cert=None,
        cert=str(issued["alice"].cert),
        key=str(issued["alice"].key),
        peer_fingerprints={"alice": issued["bob"].fingerprint, "bob": issued["bob"].fingerprint},
    )
    with pytest.raises(
        ConfigError, match=r"peer_fingerprints'\]\['alice'\]: .* is not the fingerprint"
    ):
        PeerTrust(wrong, party="alice", parties=["alice", "bob"], log=log)
    with pytest.raises(ConfigError, match=r"tls_config\['cert'\]: cannot read"):
        PeerTrust(
            TLSConfig(ca_cert=None, cert="nope.pem", key="nope.key", peer_fingerprints={}),
            party="alice",
            parties=["alice"],
            log=log,
        )


# ------------------------------------------------------------------ the federation file

PARTIES = """parties:
  alice: {address: "127.0.0.1:1", cert: a.pem, key: a.key}
  bob: {address: "127.0.0.1:2", cert: b.pem, key: b.key}
"""


def _fed(tmp_path: Path, body: str) -> Path:
    (tmp_path / "prog.py").write_text("def main():\n    pass\n")
    path = tmp_path / "fed.yaml"
    path.write_text("job_name: j\nprogram: prog.py\n" + body)
    return path


def test_federation_tls_fingerprint_form(tmp_path: Path) -> None:
    fed = load_federation(
        _fed(
            tmp_path,
            f"tls:\n  peer_fingerprints: {{alice: '{FP}', bob: '{FP.upper()}'}}\n" + PARTIES,
        )
    )
    assert fed.peer_fingerprints == {"alice": FP, "bob": FP}
    assert fed.ca_cert is None and fed.tls


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (
            f"tls: {{ca_cert: ca.pem, peer_fingerprints: {{alice: '{FP}'}}}}",
            "tls: expected exactly one",
        ),
        (f"tls: {{peer_fingerprints: {{alice: '{FP}'}}}}", "tls.peer_fingerprints.bob: missing"),
        (
            f"tls: {{peer_fingerprints: {{alice: '{FP}', bob: '{FP}', carol: '{FP}'}}}}",
            "tls.peer_fingerprints.carol: expected a party",
        ),
        (
            "tls: {peer_fingerprints: {alice: 'sha256:12', bob: 'x'}}",
            "tls.peer_fingerprints.alice: expected 'sha256:'",
        ),
    ],
)
def test_federation_tls_errors(tmp_path: Path, tls: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_federation(_fed(tmp_path, tls + "\n" + PARTIES))


def test_silo_check_and_run_refuse_plaintext_to_a_remote_address(tmp_path: Path) -> None:
    remote = 'parties:\n  alice: {address: "127.0.0.1:1"}\n  bob: {address: "10.9.8.7:2"}\n'
    path = _fed(tmp_path, remote)
    for args in (["check", str(path)], ["run", str(path), "--party", "alice"]):
        done = run_silo(*args, timeout=30)
        assert done.returncode == 2, done
        assert "parties.bob.address: 10.9.8.7:2 is not a loopback address" in done.stderr, done
        assert "python -m silo certs" in done.stderr
    allowed = _fed(tmp_path, "allow_plaintext: true\n" + remote)
    done = run_silo("check", str(allowed), timeout=30)
    assert done.returncode == 0, done


def _cert_der(common_name: str, san: list[str] | None) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_certificate_names_its_san_dns_entries_or_else_its_common_name() -> None:
    assert certified_names(_cert_der("alice", None)) == {"alice"}
    assert certified_names(_cert_der("alice", ["bob", "bob.example.org"])) == {
        "bob",
        "bob.example.org",
    }


def test_verify_identity_false_needs_a_ca_and_accepts_a_shared_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"verify_identity'\]: false needs 'ca_cert'"):
        parse_tls_config(
            {"peer_fingerprints": {"b": FP}, "cert": "c", "key": "k", "verify_identity": False}
        )
    make_tls_files(tmp_path, ["shared"])
    shared = {
        "ca_cert": str(tmp_path / "ca.pem"),
        "cert": str(tmp_path / "shared.pem"),
        "key": str(tmp_path / "shared.key"),
    }
    log = party_logger("alice", "job")
    with pytest.raises(ConfigError, match="names 'shared', not this party 'alice'"):
        PeerTrust(parse_tls_config(shared), party="alice", parties=["alice"], log=log)  # type: ignore[arg-type]
    unverified = parse_tls_config({**shared, "verify_identity": False})
    assert unverified is not None and not unverified.verify_identity
    PeerTrust(unverified, party="alice", parties=["alice"], log=log)
