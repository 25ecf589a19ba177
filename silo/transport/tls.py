"""Mutual TLS contexts from a :class:`~silo.config.TLSConfig`."""

from __future__ import annotations

import ssl

from ..config import TLSConfig
from ..errors import ConfigError

__all__ = ["client_context", "server_context"]


def _load(ctx: ssl.SSLContext, tls: TLSConfig) -> ssl.SSLContext:
    for key in ("ca_cert", "cert", "key"):
        path = getattr(tls, key)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"tls_config['{key}']: cannot read {path!r}: {exc.strerror}") from exc
    try:
        ctx.load_verify_locations(cafile=tls.ca_cert)
        ctx.load_cert_chain(tls.cert, tls.key)
    except ssl.SSLError as exc:
        raise ConfigError(f"tls_config: cannot load certificates: {exc}") from exc
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    """Serve with our certificate and require a client certificate signed by the CA."""
    return _load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls)


def client_context(tls: TLSConfig) -> ssl.SSLContext:
    """Connect with our certificate; verify the peer's chain against the CA.

    Host names are not checked: parties are addressed by ``host:port`` and identified by the CA.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    return _load(ctx, tls)
