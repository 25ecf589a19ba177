"""RayFed's ``tls_config``, and the one certificate many RayFed deployments share.

silo identifies a party by the name in its certificate (a subjectAltName DNS entry, else the
CN). RayFed never did, so its deployments often give every party the same certificate, naming
no party. :func:`check_identity` reads this party's certificate (with ``cryptography``) and,
when it names no party of the job, warns :class:`UnverifiedIdentityWarning`: any holder of a
certificate signed by the CA can then act as any party.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import Any

from .exceptions import UnverifiedIdentityWarning

__all__ = ["certified_names", "check_identity"]


def certified_names(pem: bytes) -> list[str]:
    """The names a certificate certifies: its subjectAltName DNS entries, else its CN(s).

    Raises ``ValueError`` if ``pem`` is not a PEM certificate.
    """
    from cryptography import x509  # imported on first use: only TLS jobs pay for it
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return list(san.value.get_values_for_type(x509.DNSName))


def check_identity(tls_config: Mapping[str, Any] | None, parties: Collection[str]) -> bool:
    """Whether this party's certificate names a party of the job; warns when it does not.

    Returns ``True`` without TLS, and when the certificate cannot be read here (silo's own
    checks then report it, naming the file).
    """
    if not isinstance(tls_config, Mapping) or not isinstance(tls_config.get("cert"), str):
        return True
    path = tls_config["cert"]
    try:
        with open(path, "rb") as f:
            names = certified_names(f.read())
    except (OSError, ValueError):
        return True
    if any(name in parties for name in names):
        return True
    warnings.warn(
        f"tls_config['cert'] ({path}) names {names or 'nobody'}, no party of this job "
        f"({', '.join(sorted(parties))}): a certificate shared by every party, as RayFed "
        f"deployments often use. The channel is encrypted and the CA checked, but party "
        f"identity is not verified: any holder of a certificate from this CA can act as any "
        f"party. Give each party a certificate naming it (`python -m silo certs`).",
        UnverifiedIdentityWarning,
        stacklevel=3,
    )
    return False
