"""Mutual TLS between parties, and which party a certificate speaks for.

A party's certificate names its party: a subjectAltName DNS entry equal to the party name (the
common name when the certificate has no subjectAltName). Peers are trusted in one of two ways
(:class:`~silo.config.TLSConfig`):

* **CA mode** (``ca_cert``): OpenSSL verifies every certificate, both ways, against the CA.
* **Fingerprint mode** (``peer_fingerprints``): each party has a self-signed certificate and
  knows the SHA-256 of each peer's, as SSH knows hosts.

Theory of operation:

* **Dialing.** Every link gets its own client context (:meth:`PeerTrust.client_context`) whose
  SSL objects run a check right after the handshake, before a byte of HTTP is sent: the
  certificate must name the party that was dialed (and, in fingerprint mode, have its
  fingerprint). A mismatch raises :class:`ssl.SSLCertVerificationError` with both names; the
  link sees a failed connection attempt and retries it like any other. It is logged once.
* **Listening.** In CA mode the server requires a client certificate signed by the CA. Python's
  ``ssl`` has no verify callback, so in fingerprint mode the server asks for a certificate
  (``CERT_OPTIONAL``) and trusts exactly the peer certificates its own dialer has verified: once
  the dialer to bob has checked bob's fingerprint, bob's certificate (the same one bob presents
  as a client) is added to the server context's trust store. Both contexts speak TLS 1.3 only,
  where the client finishes its handshake before the server judges the client's certificate:
  so the first dial of each party to each peer learns the peer's certificate even while that
  peer does not trust the dialer yet, and the refused attempt is simply retried.
* **Per request.** :meth:`PeerTrust.client_refusal` tells the HTTP layer whether a request that
  claims to come from a party may: the connection's verified certificate must name a party of
  the job, and the party the request claims to be. Every frame's source must then be that party
  (``silo/transport/server.py``).
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any

from ..config import Address, TLSConfig
from ..errors import ConfigError

__all__ = ["PeerTrust", "certified_names", "file_fingerprint", "fingerprint"]

#: At most this many distinct refusal messages are remembered, so that each is logged once.
_REMEMBERED = 256


def fingerprint(der: bytes) -> str:
    """``"sha256:<hex>"`` of a DER certificate, as ``tls_config['peer_fingerprints']`` spells it."""
    return "sha256:" + hashlib.sha256(der).hexdigest()


def file_fingerprint(path: str, key: str) -> str:
    """The fingerprint of the first certificate in the PEM file ``path``; raises
    :class:`ConfigError` naming ``key`` when it cannot be read."""
    return fingerprint(_read_pem(path, key))


def certified_names(der: bytes) -> frozenset[str]:
    """The names a DER certificate certifies: its subjectAltName DNS entries, or its common
    name when it has no subjectAltName. Raises :class:`ValueError` for bytes that are not a
    certificate."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(
            str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        )
    return frozenset(san.get_values_for_type(x509.DNSName))


def _names(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in sorted(names)) or "no name"


class _CheckedObject(ssl.SSLObject):
    """An SSL object that runs its context's ``silo_check`` once the handshake is done."""

    def do_handshake(self) -> None:
        super().do_handshake()
        check: Callable[[ssl.SSLObject], None] | None = getattr(self.context, "silo_check", None)
        if check is not None:
            check(self)


class PeerTrust:
    """This party's TLS contexts and its judgement of the peers' certificates.

    Raises :class:`ConfigError` naming the key when a file cannot be read or loaded, or when
    this party's own certificate does not name it (or does not have the fingerprint the
    configuration gives it).
    """

    def __init__(
        self,
        tls: TLSConfig,
        *,
        party: str,
        parties: Iterable[str],
        log: logging.LoggerAdapter[Any],
    ) -> None:
        self._tls = tls
        self._party = party
        self._peers = frozenset(parties) - {party}
        self._log = log
        self._prints = dict(tls.peer_fingerprints or {})
        self._owner_of = {fp: p for p, fp in self._prints.items() if p != party}
        self._trusted: set[bytes] = set()
        self._reported: set[str] = set()
        own = _read_cert(tls)
        if tls.verify_identity:
            self._check_own(own)
        self.server_context = self._context(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.verify_mode = (
            ssl.CERT_REQUIRED if tls.ca_cert is not None else ssl.CERT_OPTIONAL
        )

    @property
    def fingerprint_mode(self) -> bool:
        return self._tls.peer_fingerprints is not None

    def client_context(self, peer: str, address: Address) -> ssl.SSLContext:
        """A context for dialing ``peer`` at ``address``: its handshake fails unless the
        certificate presented names ``peer`` (and has its fingerprint in fingerprint mode)."""
        ctx = self._context(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        if self.fingerprint_mode:
            ctx.verify_mode = ssl.CERT_NONE
        if not self._tls.verify_identity:
            return ctx
        ctx.sslobject_class = _CheckedObject
        ctx.silo_check = lambda obj: self._check_server(peer, address, obj)  # type: ignore[attr-defined]
        return ctx

    def client_refusal(self, ssl_object: ssl.SSLObject | None, claimed: str) -> str | None:
        """Why a request on this connection that claims to come from ``claimed`` is refused,
        or ``None`` if the connection's certificate names ``claimed``, a party of the job (or,
        without ``verify_identity``, if the CA signed it)."""
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            return f"refused a request that claims to come from {claimed!r}: no client certificate"
        if not self._tls.verify_identity:
            return None
        names = certified_names(der)
        if self.fingerprint_mode:
            owner = self._owner_of.get(fingerprint(der))
            if owner is None:
                return (
                    f"refused a request that claims to come from {claimed!r}: its certificate "
                    f"(naming {_names(names)}) has fingerprint {fingerprint(der)}, which is no "
                    f"peer's in tls_config['peer_fingerprints']"
                )
            if owner not in names:
                return (
                    f"refused a request that claims to come from {claimed!r}: the certificate "
                    f"with {owner!r}'s fingerprint names {_names(names)}, not {owner!r}"
                )
            certified = {owner}
        else:
            certified = set(names & self._peers)
        if not certified:
            return (
                f"refused a request that claims to come from {claimed!r}: its certificate names "
                f"{_names(names)}, no peer of party {self._party!r}"
            )
        if claimed not in certified:
            return (
                f"refused a request that claims to come from {claimed!r}: its certificate "
                f"names {_names(certified)}"
            )
        return None

    def report_once(self, text: str) -> bool:
        """Whether ``text`` is new (then it is remembered): each refusal is logged once."""
        if text in self._reported:
            return False
        if len(self._reported) < _REMEMBERED:
            self._reported.add(text)
        return True

    def _context(self, protocol: ssl._SSLMethod) -> ssl.SSLContext:
        ctx = ssl.SSLContext(protocol)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            ctx.load_cert_chain(self._tls.cert, self._tls.key)
            if self._tls.ca_cert is not None:
                ctx.load_verify_locations(cafile=self._tls.ca_cert)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"tls_config: cannot load certificates: {exc}") from exc
        return ctx

    def _check_own(self, der: bytes) -> None:
        names = certified_names(der)
        if self._party not in names:
            raise ConfigError(
                f"tls_config['cert']: {self._tls.cert!r} names {_names(names)}, not this party "
                f"{self._party!r}: peers would refuse it (make one with `python -m silo certs`)"
            )
        expected = self._prints.get(self._party)
        if expected is not None and expected != fingerprint(der):
            raise ConfigError(
                f"tls_config['peer_fingerprints'][{self._party!r}]: {expected} is not the "
                f"fingerprint of this party's certificate {self._tls.cert!r} "
                f"({fingerprint(der)})"
            )

    def _check_server(self, peer: str, address: Address, obj: ssl.SSLObject) -> None:
        """Runs in the handshake of a dial to ``peer``; raises to fail the connection."""
        der = obj.getpeercert(binary_form=True)
        dialed = f"dialed {peer} at {address}"
        if der is None:
            raise self._refuse_server(f"{dialed} but it presented no certificate")
        names = certified_names(der)
        if self.fingerprint_mode:
            got, expected = fingerprint(der), self._prints.get(peer)
            if got != expected:
                raise self._refuse_server(
                    f"{dialed} but its certificate (naming {_names(names)}) has fingerprint "
                    f"{got}, not {expected} as tls_config['peer_fingerprints'] says"
                )
        if peer not in names:
            raise self._refuse_server(f"{dialed} but its certificate names {_names(names)}")
        if self.fingerprint_mode and der not in self._trusted:
            self._trusted.add(der)
            self.server_context.load_verify_locations(cadata=der)

    def _refuse_server(self, text: str) -> ssl.SSLCertVerificationError:
        if self.report_once(text):
            self._log.warning("%s", text)
        return ssl.SSLCertVerificationError(text)


def _read_cert(tls: TLSConfig) -> bytes:
    """This party's own certificate (DER), checking that every file can be read."""
    for key in ("ca_cert", "cert", "key"):
        path = getattr(tls, key)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"tls_config['{key}']: cannot read {path!r}: {exc.strerror}") from exc
    return _read_pem(tls.cert, "tls_config['cert']")


def _read_pem(path: str, key: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path!r}: {exc.strerror}") from exc
    try:
        return x509.load_pem_x509_certificates(data)[0].public_bytes(Encoding.DER)
    except ValueError as exc:
        raise ConfigError(f"{key}: {path!r} is not a PEM certificate: {exc}") from exc
