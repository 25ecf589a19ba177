"""``python -m silo certs FEDERATION.yaml --out DIR``: keys and certificates for a federation.

Two modes, matching the two forms of ``tls`` (:mod:`silo.transport.tls`):

* **CA** (default): a CA key and certificate (``ca.key``, ``ca.pem``) and, per party, a key and
  a certificate signed by the CA (``NAME.key``, ``NAME.pem``).
* **Self-signed** (``--self-signed``): per party, a key and a self-signed certificate; the
  parties then exchange the fingerprints printed.

Every certificate names its party in its subjectAltName (a DNS entry equal to the party name,
plus the host of the party's address). A key is never overwritten: a key file that exists is
reused (and said so), with its certificate if that still fits, or a new certificate is issued for
it when there is none. A certificate that exists without its key, or that does not fit its key,
party or CA, is refused with a :class:`ConfigError` naming the file. Keys are written with mode
0600; files are created exclusively, so a file that appears meanwhile is not overwritten either.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError
from .federation import Federation, load_federation
from .transport.tls import certified_names, fingerprint

__all__ = ["Issued", "make_certs", "run_certs"]

_Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """One party's files, and the fingerprint of its certificate."""

    party: str
    cert: Path
    key: Path
    fingerprint: str


def run_certs(
    file: str,
    out: str,
    *,
    self_signed: bool,
    parties: list[str] | None = None,
    days: int = 365,
    echo: Callable[[str], object] = print,
) -> int:
    """The ``certs`` command: make the files, print the ``tls`` section to add; return 0.

    Raises :class:`ConfigError` for a bad federation file, an unknown party, a bad ``days`` or
    files that cannot be reused.
    """
    fed = load_federation(file)
    chosen = [fed.check_party(p) for p in parties] if parties else list(fed.parties)
    if days < 1:
        raise ConfigError(f"--days: expected a number of days >= 1, got {days}")
    directory = Path(out)
    hosts = {party: fed.parties[party].address.host for party in chosen}
    issued = make_certs(directory, hosts, self_signed=self_signed, days=days, echo=echo)
    base = Path(fed.source).resolve().parent
    if self_signed:
        echo("\nfingerprints (give them to every other party):")
        for item in issued:
            echo(f"  {item.party}: {item.fingerprint}")
        known = _known_fingerprints(fed, directory, issued)
        if set(known) != set(fed.parties):
            missing = ", ".join(p for p in fed.parties if p not in known)
            echo(f"\nput the fingerprints of {missing} in tls.peer_fingerprints as well.")
        echo(f"\nthe tls section of {fed.source} (paths relative to it):\n")
        echo("tls:\n  peer_fingerprints:")
        for party in fed.parties:
            echo(f'    {party}: "{known.get(party, "sha256:<from " + party + ">")}"')
    else:
        echo(f"\nthe tls section of {fed.source} (paths relative to it):\n")
        echo(f"tls: {{ca_cert: {_relative(directory / 'ca.pem', base)}}}")
    echo("parties:")
    for party, spec in fed.parties.items():
        cert, key = (
            _relative(directory / f"{party}.pem", base),
            _relative(directory / f"{party}.key", base),
        )
        echo(f'  {party}: {{address: "{spec.address}", cert: {cert}, key: {key}}}')
    if self_signed:
        echo("\nkeep each NAME.key secret: only its own party needs it.")
    else:
        echo("\nkeep ca.key and each NAME.key secret: a party needs only its own key and ca.pem.")
    return 0


def make_certs(
    out: Path,
    hosts: Mapping[str, str],
    *,
    self_signed: bool,
    days: int = 365,
    echo: Callable[[str], object] = print,
) -> list[Issued]:
    """Make (or reuse) in ``out`` the files of each party of ``hosts`` (``{party: host of its
    address}``), and in CA mode the CA's; returns what each party has.

    Raises :class:`ConfigError` naming the file when an existing file cannot be reused.
    """
    out.mkdir(parents=True, exist_ok=True)
    issuer = None if self_signed else _ca(out, days, echo)
    return [_party(out, party, host, issuer, days, echo) for party, host in hosts.items()]


def _ca(out: Path, days: int, echo: Callable[[str], object]) -> tuple[_Key, x509.Certificate]:
    key_path, cert_path = out / "ca.key", out / "ca.pem"
    if cert_path.exists() and not key_path.exists():
        raise ConfigError(
            f"{cert_path}: exists without its key {key_path}; silo certs cannot sign with it "
            f"(move it away to make a new CA)"
        )
    key, reused = _key(key_path, echo)
    if cert_path.exists():
        cert = _read_cert(cert_path)
        if cert.public_key() != key.public_key():
            raise ConfigError(f"{cert_path}: does not belong to the key {key_path}")
        echo(f"reusing the CA certificate {cert_path}")
        return key, cert
    if reused:
        echo(f"issuing a new CA certificate {cert_path} for the existing key")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "silo federation CA")])
    builder = (
        _builder(name, name, key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(digital_signature=False, cert_sign=True), critical=True)
    )
    cert = builder.sign(key, hashes.SHA256())
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    echo(f"wrote {cert_path} (the CA certificate every party trusts) and {key_path}")
    return key, cert


def _party(
    out: Path,
    party: str,
    host: str,
    issuer: tuple[_Key, x509.Certificate] | None,
    days: int,
    echo: Callable[[str], object],
) -> Issued:
    key_path, cert_path = out / f"{party}.key", out / f"{party}.pem"
    if cert_path.exists() and not key_path.exists():
        raise ConfigError(
            f"{cert_path}: exists without its key {key_path}; move it away or give its key"
        )
    key, reused = _key(key_path, echo)
    if cert_path.exists():
        cert = _read_cert(cert_path)
        _check_reused(cert_path, cert, key, party, issuer)
        echo(f"reusing {cert_path}")
    else:
        cert = _issue(party, host, key, issuer, days)
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        how = "self-signed" if issuer is None else "signed by the CA"
        extra = "" if reused else f" and {key_path}"
        echo(f"wrote {cert_path} ({party}'s certificate, {how}){extra}")
    der = cert.public_bytes(serialization.Encoding.DER)
    return Issued(party, cert_path, key_path, fingerprint(der))


def _issue(
    party: str, host: str, key: _Key, issuer: tuple[_Key, x509.Certificate] | None, days: int
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party)])
    names: list[x509.GeneralName] = [x509.DNSName(party)]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        if host != party:
            names.append(x509.DNSName(host))
    issuer_name = issuer[1].subject if issuer else subject
    builder = (
        _builder(subject, issuer_name, key, days)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    return builder.sign(issuer[0] if issuer else key, hashes.SHA256())


def _check_reused(
    path: Path,
    cert: x509.Certificate,
    key: _Key,
    party: str,
    issuer: tuple[_Key, x509.Certificate] | None,
) -> None:
    if cert.public_key() != key.public_key():
        raise ConfigError(f"{path}: does not belong to the key next to it; move one of them away")
    names = certified_names(cert.public_bytes(serialization.Encoding.DER))
    if party not in names:
        raise ConfigError(f"{path}: names {', '.join(sorted(names))}, not {party!r}; move it away")
    expected = issuer[1].subject if issuer else cert.subject
    if cert.issuer != expected:
        what = "this CA" if issuer else "itself (--self-signed)"
        raise ConfigError(f"{path}: is not signed by {what}; move it away to issue a new one")


def _builder(
    subject: x509.Name, issuer: x509.Name, key: _Key, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key(path: Path, echo: Callable[[str], object]) -> tuple[_Key, bool]:
    """The EC key in ``path``, reused if it exists (``True``), else made and written."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(
                f"{path}: exists but is not an unencrypted PEM key silo can reuse ({exc}); "
                f"silo certs never overwrites a key: move it away"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(
                f"{path}: exists but is a {type(key).__name__}, not an EC key; "
                f"silo certs never overwrites a key: move it away"
            )
        echo(f"reusing the existing key {path}")
        return key, True
    key = ec.generate_private_key(ec.SECP256R1())
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(path, data, 0o600)
    return key, False


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise ConfigError(
            f"{path}: exists but is not a PEM certificate ({exc}); move it away"
        ) from None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path}: appeared while silo certs ran; not overwriting it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _known_fingerprints(fed: Federation, out: Path, issued: list[Issued]) -> dict[str, str]:
    """Fingerprints of every party whose certificate is in ``out`` (just made or already there)."""
    known = {item.party: item.fingerprint for item in issued}
    for party in fed.parties:
        path = out / f"{party}.pem"
        if party not in known and path.exists():
            known[party] = fingerprint(_read_cert(path).public_bytes(serialization.Encoding.DER))
    return known


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base)).as_posix()
    except ValueError:
        return path.resolve().as_posix()
