"""Where parties listen and how they prove who they are: addresses, TLS, and plain text.

``parse_addresses`` and ``parse_tls_config`` validate ``silo.init``'s ``addresses`` and
``tls_config`` (the federation file's ``parties`` and ``tls`` go through the same functions);
:func:`check_plaintext` refuses a channel without TLS on anything but loopback addresses unless
``allow_plaintext`` says the network is trusted. Every failure is a :class:`ConfigError` naming
where the bad value was given (see :mod:`silo.validate`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Mapping
from typing import Any

from .config import Address, Config, TLSConfig
from .errors import ConfigError
from .validate import KeyPath, describe, expect_bool, expect_mapping, reject_unknown

__all__ = [
    "check_plaintext",
    "check_tls_parties",
    "is_loopback",
    "parse_address",
    "parse_addresses",
    "parse_fingerprint",
    "parse_tls_config",
]


def parse_address(path: KeyPath | str, raw: object) -> Address:
    """Parse ``"host:port"``; raise :class:`ConfigError` naming ``path`` when malformed."""
    if not isinstance(raw, str) or ":" not in raw:
        raise ConfigError(f"{path}: expected 'host:port', got {describe(raw)}")
    text = raw.split("://", 1)[-1]
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"{path}: expected 'host:port' with a port from 1 to 65535, got {describe(raw)}"
        )
    return Address(host, int(port_text))


def parse_addresses(raw: object, party: object) -> dict[str, Address]:
    """Validate ``addresses`` and ``party`` of ``silo.init``."""
    given = expect_mapping(KeyPath("addresses"), raw)
    if len(given) < 1:
        raise ConfigError("addresses: expected at least one party")
    addresses = {
        name: parse_address(f"addresses[{name!r}]", value) for name, value in given.items()
    }
    if not isinstance(party, str) or party not in addresses:
        raise ConfigError(f"party: expected one of {sorted(addresses)}, got {describe(party)}")
    return addresses


_FINGERPRINT = re.compile(r"^sha256:([0-9a-f]{2}(?::?[0-9a-f]{2}){31})$")


def parse_fingerprint(path: KeyPath | str, raw: object) -> str:
    """Normalise ``"sha256:<hex>"`` (64 hex digits, any case, ``:`` between bytes allowed) to
    ``"sha256:<64 lower-case hex digits>"``; raise :class:`ConfigError` naming ``path``."""
    match = _FINGERPRINT.match(raw.strip().lower()) if isinstance(raw, str) else None
    if match is None:
        raise ConfigError(
            f"{path}: expected 'sha256:' and 64 hex digits (the SHA-256 of the DER "
            f"certificate, as `silo certs --self-signed` prints it), got {describe(raw)}"
        )
    return "sha256:" + match.group(1).replace(":", "")


def parse_tls_config(raw: Mapping[str, Any] | TLSConfig | None) -> TLSConfig | None:
    """Validate ``tls_config``: ``{"cert": path, "key": path}`` and either ``"ca_cert": path``
    or ``"peer_fingerprints": {party: "sha256:<hex>"}``.

    Which parties the fingerprints must cover is checked by :func:`check_tls_parties`.
    """
    if raw is None or isinstance(raw, TLSConfig):
        return raw
    root = KeyPath("tls_config")
    given = expect_mapping(root, raw)
    reject_unknown(root, given, ["ca_cert", "cert", "key", "peer_fingerprints", "verify_identity"])
    values: dict[str, str] = {}
    for key in ("cert", "key"):
        value = given.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"tls_config['{key}']: expected a file path, got {describe(value)}")
        values[key] = value
    ca_cert = given.get("ca_cert")
    fingerprints = given.get("peer_fingerprints")
    if (ca_cert is None) == (fingerprints is None):
        raise ConfigError(
            "tls_config: expected exactly one of 'ca_cert' (a CA signs every party's "
            "certificate) and 'peer_fingerprints' (self-signed certificates), got "
            + ("both" if ca_cert is not None else "neither")
        )
    if ca_cert is not None and (not isinstance(ca_cert, str) or not ca_cert):
        raise ConfigError(f"tls_config['ca_cert']: expected a file path, got {describe(ca_cert)}")
    parsed: dict[str, str] | None = None
    if fingerprints is not None:
        path = "tls_config['peer_fingerprints']"
        given_prints = expect_mapping(root / "peer_fingerprints", fingerprints)
        if not given_prints:
            raise ConfigError(f"{path}: expected a fingerprint per party, got an empty mapping")
        parsed = {
            party: parse_fingerprint(f"{path}[{party!r}]", value)
            for party, value in given_prints.items()
        }
    verify = expect_bool(root / "verify_identity", given.get("verify_identity", True))
    if not verify and parsed is not None:
        raise ConfigError(
            "tls_config['verify_identity']: false needs 'ca_cert'; with 'peer_fingerprints' "
            "a peer is known by its certificate, so its identity is always verified"
        )
    return TLSConfig(ca_cert=ca_cert, peer_fingerprints=parsed, verify_identity=verify, **values)


def check_tls_parties(tls: TLSConfig | None, parties: Collection[str], party: str) -> None:
    """With ``peer_fingerprints``, every peer of ``party`` needs a fingerprint and every name in
    the map must be a party of the job. Raises :class:`ConfigError` naming the party."""
    if tls is None or tls.peer_fingerprints is None:
        return
    path = "tls_config['peer_fingerprints']"
    unknown = sorted(set(tls.peer_fingerprints) - set(parties))
    if unknown:
        raise ConfigError(
            f"{path}: {', '.join(map(repr, unknown))} is not a party of this job; "
            f"expected names among {', '.join(sorted(parties))}"
        )
    missing = sorted(p for p in parties if p != party and p not in tls.peer_fingerprints)
    if missing:
        raise ConfigError(
            f"{path}: no fingerprint for {', '.join(map(repr, missing))}; every peer needs one "
            f"(`python -m silo certs FILE --self-signed` prints them)"
        )


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` and ``localhost``: addresses only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_plaintext(
    addresses: Mapping[str, Address],
    tls: TLSConfig | None,
    config: Config,
    *,
    key: str = "addresses[{party!r}]",
) -> None:
    """Without TLS, every address must be a loopback address unless ``allow_plaintext``.

    Raises :class:`ConfigError` naming the first address that is not; ``key`` is how the
    message names where it was given (formatted with ``party``).
    """
    if tls is not None or config.allow_plaintext:
        return
    for party, address in addresses.items():
        if not is_loopback(address.host):
            raise ConfigError(
                f"{key.format(party=party)}: {address} is not a loopback address, and without "
                f"TLS anyone who can reach it could read and forge this job's frames; make "
                f"certificates with `python -m silo certs FEDERATION.yaml --out DIR` and "
                f"configure TLS, or set allow_plaintext: true if the network is trusted"
            )
