"""Validated, frozen configuration.

``parse_config`` turns the ``config`` mapping given to ``silo.init`` into a :class:`Config`.
Every key is checked: an unknown key or a value of the wrong type raises :class:`ConfigError`
naming the key path and what was expected. Key names follow RayFed so its users can move over.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

__all__ = [
    "Address",
    "Config",
    "CrossSiloCommConfig",
    "ExecutorConfig",
    "RetryPolicy",
    "TLSConfig",
    "check_job_name",
    "check_plaintext",
    "check_tls_parties",
    "is_loopback",
    "parse_addresses",
    "parse_config",
    "parse_executor",
    "parse_fingerprint",
    "parse_tls_config",
]

DEFAULT_MAX_MESSAGE = 2 * 1024**3

#: Keys RayFed users may carry over that silo spells differently, with the advice to give.
_RAYFED_HINTS = {
    "grpc_retry_policy": "silo calls it 'retry_policy'",
    "grpc_channel_options": "silo's channel is aiohttp; there are no gRPC channel options",
    "proxy_max_restarts": "silo has no proxy actors to restart",
    "send_resource_label": "silo has no Ray resources",
    "recv_resource_label": "silo has no Ray resources",
    "use_global_proxy": "silo has no proxy actors",
    "max_concurrency": "silo's channel has no proxy actor concurrency to set",
    "listening_address": "silo listens on addresses[party]",
    "cross_silo_message": "RayFed's older name: use 'cross_silo_comm'",
}


@dataclass(frozen=True)
class Address:
    """A ``host:port`` pair."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RetryPolicy:
    """How a frame is retried: ``max_attempts`` tries, exponential backoff, within the timeout."""

    max_attempts: int = 5
    initial_backoff_ms: int = 50
    max_backoff_ms: int = 1000
    backoff_multiplier: float = 2.0

    def backoff_s(self, attempt: int) -> float:
        """Delay in seconds before retry number ``attempt`` (1 for the first retry)."""
        delay = self.initial_backoff_ms * self.backoff_multiplier ** max(0, attempt - 1)
        return min(delay, self.max_backoff_ms) / 1000.0


@dataclass(frozen=True)
class CrossSiloCommConfig:
    """``config["cross_silo_comm"]``: the channel between parties."""

    timeout_in_ms: int = 60000
    messages_max_size_in_bytes: int = DEFAULT_MAX_MESSAGE
    exit_on_sending_failure: bool = False
    continue_waiting_for_data_sending_on_error: bool = False
    expose_error_trace: bool = False
    serializing_allowed_list: Mapping[str, tuple[str, ...] | str] | str | None = None
    http_header: Mapping[str, str] = field(default_factory=dict)
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    heartbeat_interval_ms: int = 1000

    @property
    def timeout_s(self) -> float:
        return self.timeout_in_ms / 1000.0

    @property
    def heartbeat_s(self) -> float:
        return self.heartbeat_interval_ms / 1000.0


#: The executors ``config["executor"]["kind"]`` may name, and the keys each takes.
EXECUTOR_KEYS = {
    "threads": {"kind", "max_workers"},
    "processes": {"kind", "max_workers"},
    "dask": {"kind", "address", "n_workers"},
}


@dataclass(frozen=True)
class ExecutorConfig:
    """``config["executor"]``: where this party's plain functions and actors run.

    ``max_workers`` (threads, processes): ``None`` is the kind's default. ``address`` (dask):
    the scheduler, ``tcp://host:port``, or ``"local"`` for a ``LocalCluster`` of ``n_workers``
    worker processes that the runtime starts and closes itself.
    """

    kind: str = "threads"
    max_workers: int | None = None
    address: str | None = None
    n_workers: int = 2


@dataclass(frozen=True)
class Config:
    """The whole ``config`` mapping of ``silo.init``."""

    cross_silo_comm: CrossSiloCommConfig = field(default_factory=CrossSiloCommConfig)
    barrier_on_initializing: bool = False
    allow_plaintext: bool = False
    #: A ``silo.get`` waiting longer than this many seconds logs a warning, then again every
    #: such interval (:mod:`silo.waiting`).
    slow_get_warning_s: float = 30.0
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


@dataclass(frozen=True)
class TLSConfig:
    """Mutual TLS: this party's certificate and key, and how the peers' are trusted.

    Exactly one of ``ca_cert`` (the CA that signs every party's certificate) and
    ``peer_fingerprints`` (``{party: "sha256:<64 hex digits>"}``, the SHA-256 of each party's
    DER certificate, lower case) is set. ``verify_identity=False`` (CA mode only) accepts any
    certificate the CA signed as any party: RayFed's shared certificates, which ``silo.fed``
    accepts with a warning.
    """

    ca_cert: str | None
    cert: str
    key: str
    peer_fingerprints: Mapping[str, str] | None = None
    verify_identity: bool = True


def _describe(value: object) -> str:
    return f"{value!r} ({type(value).__name__})"


def _expect_int(path: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: expected an integer >= {minimum}, got {_describe(value)}")
    return value


def _expect_positive(path: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{path}: expected a number of seconds > 0, got {_describe(value)}")
    return float(value)


def _expect_bool(path: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {_describe(value)}")
    return value


def _expect_mapping(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {_describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{path}: keys must be strings, got {_describe(key)}")
    return value


def _reject_unknown(path: str, given: Mapping[str, Any], known: set[str]) -> None:
    for key in given:
        if key not in known:
            hint = _RAYFED_HINTS.get(key)
            expected = ", ".join(sorted(known))
            advice = f" ({hint})" if hint else ""
            raise ConfigError(f"{path}: unknown key {key!r}{advice}; expected one of: {expected}")


def _parse_retry_policy(path: str, raw: object) -> RetryPolicy:
    given = _expect_mapping(path, raw)
    _reject_unknown(
        path, given, {"max_attempts", "initial_backoff_ms", "max_backoff_ms", "backoff_multiplier"}
    )
    defaults = RetryPolicy()
    multiplier = given.get("backoff_multiplier", defaults.backoff_multiplier)
    if (
        isinstance(multiplier, bool)
        or not isinstance(multiplier, (int, float))
        or not math.isfinite(multiplier)
        or multiplier < 1
    ):
        raise ConfigError(
            f"{path}['backoff_multiplier']: expected a number >= 1, got {_describe(multiplier)}"
        )
    policy = RetryPolicy(
        max_attempts=_expect_int(
            f"{path}['max_attempts']", given.get("max_attempts", defaults.max_attempts), minimum=1
        ),
        initial_backoff_ms=_expect_int(
            f"{path}['initial_backoff_ms']",
            given.get("initial_backoff_ms", defaults.initial_backoff_ms),
            minimum=0,
        ),
        max_backoff_ms=_expect_int(
            f"{path}['max_backoff_ms']",
            given.get("max_backoff_ms", defaults.max_backoff_ms),
            minimum=0,
        ),
        backoff_multiplier=float(multiplier),
    )
    if policy.max_backoff_ms < policy.initial_backoff_ms:
        raise ConfigError(
            f"{path}['max_backoff_ms']: must be >= initial_backoff_ms "
            f"({policy.initial_backoff_ms}), got {policy.max_backoff_ms}"
        )
    return policy


def _parse_allowed_list(path: str, raw: object) -> Mapping[str, tuple[str, ...] | str] | str | None:
    """``None`` (the safe set only), ``"*"`` (full trust) or ``{module: "*" or [names]}``.

    A list holding ``"*"`` (RayFed's spelling) means the module wildcard ``"*"``.
    """
    if raw is None or raw == "*":
        return raw
    if isinstance(raw, str):
        raise ConfigError(
            f'{path}: expected "*" (trust peers fully) or a mapping of module to "*" or a '
            f"list of names, got {_describe(raw)}"
        )
    given = _expect_mapping(path, raw)
    allowed: dict[str, tuple[str, ...] | str] = {}
    for module, names in given.items():
        if not module:
            raise ConfigError(f"{path}: a module name cannot be empty, got {_describe(module)}")
        if names == "*":
            allowed[module] = "*"
            continue
        if not isinstance(names, (list, tuple)):
            raise ConfigError(
                f'{path}[{module!r}]: expected "*" or a list of names, got {_describe(names)}'
            )
        for name in names:
            if not isinstance(name, str) or not name:
                raise ConfigError(
                    f"{path}[{module!r}]: expected a list of names, got {_describe(name)} "
                    f"in {names!r}"
                )
        allowed[module] = "*" if "*" in names else tuple(names)
    return allowed


def _parse_http_header(path: str, raw: object) -> dict[str, str]:
    given = _expect_mapping(path, raw)
    for name, value in given.items():
        if not isinstance(value, str):
            raise ConfigError(f"{path}[{name!r}]: expected a string, got {_describe(value)}")
    return dict(given)


def _parse_comm(path: str, raw: object) -> CrossSiloCommConfig:
    given = _expect_mapping(path, raw)
    defaults = CrossSiloCommConfig()
    _reject_unknown(path, given, set(CrossSiloCommConfig.__dataclass_fields__))
    timeout_in_ms = _expect_int(
        f"{path}['timeout_in_ms']", given.get("timeout_in_ms", defaults.timeout_in_ms), minimum=1
    )
    return CrossSiloCommConfig(
        timeout_in_ms=timeout_in_ms,
        messages_max_size_in_bytes=_expect_int(
            f"{path}['messages_max_size_in_bytes']",
            given.get("messages_max_size_in_bytes", defaults.messages_max_size_in_bytes),
            minimum=1024,
        ),
        exit_on_sending_failure=_expect_bool(
            f"{path}['exit_on_sending_failure']",
            given.get("exit_on_sending_failure", defaults.exit_on_sending_failure),
        ),
        continue_waiting_for_data_sending_on_error=_expect_bool(
            f"{path}['continue_waiting_for_data_sending_on_error']",
            given.get(
                "continue_waiting_for_data_sending_on_error",
                defaults.continue_waiting_for_data_sending_on_error,
            ),
        ),
        expose_error_trace=_expect_bool(
            f"{path}['expose_error_trace']",
            given.get("expose_error_trace", defaults.expose_error_trace),
        ),
        serializing_allowed_list=_parse_allowed_list(
            f"{path}['serializing_allowed_list']", given.get("serializing_allowed_list")
        ),
        http_header=_parse_http_header(f"{path}['http_header']", given.get("http_header", {})),
        retry_policy=_parse_retry_policy(f"{path}['retry_policy']", given.get("retry_policy", {})),
        heartbeat_interval_ms=_heartbeat_interval(path, given, timeout_in_ms),
    )


def _heartbeat_interval(path: str, given: Mapping[str, Any], timeout_in_ms: int) -> int:
    """``heartbeat_interval_ms``: as given, below ``timeout_in_ms``; when not given, 1000 or a
    quarter of ``timeout_in_ms`` when that is shorter, so a short timeout never declares a live
    peer lost between two heartbeats."""
    key = f"{path}['heartbeat_interval_ms']"
    if "heartbeat_interval_ms" not in given:
        return min(CrossSiloCommConfig.heartbeat_interval_ms, max(1, timeout_in_ms // 4))
    interval = _expect_int(key, given["heartbeat_interval_ms"], minimum=1)
    if interval >= timeout_in_ms:
        raise ConfigError(
            f"{key}: expected an interval below timeout_in_ms ({timeout_in_ms}), got {interval}: "
            f"a peer would be declared lost between two of its heartbeats"
        )
    return interval


def parse_executor(path: str, raw: object) -> ExecutorConfig:
    """Validate ``config["executor"]``; raises :class:`ConfigError` naming the bad value."""
    given = _expect_mapping(path, raw)
    kind = given.get("kind", "threads")
    if kind not in EXECUTOR_KEYS:
        raise ConfigError(
            f"{path}['kind']: expected one of {', '.join(EXECUTOR_KEYS)}, got {_describe(kind)}"
        )
    _reject_unknown(path, given, EXECUTOR_KEYS[kind])
    if kind != "dask":
        workers = given.get("max_workers")
        if workers is not None:
            workers = _expect_int(f"{path}['max_workers']", workers, minimum=1)
        return ExecutorConfig(kind=kind, max_workers=workers)
    address = given.get("address")
    if address is None:
        raise ConfigError(
            f"{path}['address']: required for kind 'dask': the scheduler's 'tcp://host:port', "
            f"or 'local' for a cluster of this party's own"
        )
    if not isinstance(address, str) or not address.strip():
        raise ConfigError(
            f"{path}['address']: expected 'tcp://host:port' or 'local', got {_describe(address)}"
        )
    n_workers = _expect_int(f"{path}['n_workers']", given.get("n_workers", 2), minimum=1)
    if "n_workers" in given and address != "local":
        raise ConfigError(
            f"{path}['n_workers']: only for address 'local'; the cluster at {address} has its "
            f"own workers"
        )
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError(
            f"{path}['kind']: 'dask' needs the Dask distributed client, which is not installed: "
            f"pip install silo[dask]"
        )
    return ExecutorConfig(kind="dask", address=address, n_workers=n_workers)


def parse_config(raw: Mapping[str, Any] | Config | None, *, path: str = "config") -> Config:
    """Validate the ``config`` mapping of ``silo.init``.

    Raises :class:`ConfigError` naming the key path (``config['cross_silo_comm']['x']``) and
    what was expected, for an unknown key or a value of the wrong type.
    """
    if raw is None:
        return Config()
    if isinstance(raw, Config):
        return raw
    given = _expect_mapping(path, raw)
    _reject_unknown(
        path,
        given,
        {
            "cross_silo_comm",
            "barrier_on_initializing",
            "allow_plaintext",
            "slow_get_warning_s",
            "executor",
        },
    )
    return Config(
        cross_silo_comm=_parse_comm(f"{path}['cross_silo_comm']", given.get("cross_silo_comm", {})),
        barrier_on_initializing=_expect_bool(
            f"{path}['barrier_on_initializing']", given.get("barrier_on_initializing", False)
        ),
        allow_plaintext=_expect_bool(
            f"{path}['allow_plaintext']", given.get("allow_plaintext", False)
        ),
        slow_get_warning_s=_expect_positive(
            f"{path}['slow_get_warning_s']",
            given.get("slow_get_warning_s", Config.slow_get_warning_s),
        ),
        executor=parse_executor(f"{path}['executor']", given.get("executor", {})),
    )


_JOB_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_job_name(value: object, path: str = "job_name") -> str:
    """A job name: 1-128 ASCII letters, digits, ``.``, ``_`` or ``-``.

    Raises :class:`ConfigError` naming ``path`` and the value otherwise (an empty name, a space
    or CRLF that HTTP would strip from the header, ``/``, non-ASCII, too long).
    """
    if not isinstance(value, str) or _JOB_NAME.fullmatch(value) is None:
        raise ConfigError(
            f"{path}: expected 1-128 characters of letters, digits, '.', '_' or '-', "
            f"got {_describe(value)}"
        )
    return value


def parse_address(path: str, raw: object) -> Address:
    """Parse ``"host:port"``; raise :class:`ConfigError` naming ``path`` when malformed."""
    if not isinstance(raw, str) or ":" not in raw:
        raise ConfigError(f"{path}: expected 'host:port', got {_describe(raw)}")
    text = raw.split("://", 1)[-1]
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"{path}: expected 'host:port' with a port from 1 to 65535, got {_describe(raw)}"
        )
    return Address(host, int(port_text))


def parse_addresses(raw: object, party: object) -> dict[str, Address]:
    """Validate ``addresses`` and ``party`` of ``silo.init``."""
    given = _expect_mapping("addresses", raw)
    if len(given) < 1:
        raise ConfigError("addresses: expected at least one party")
    addresses = {
        name: parse_address(f"addresses[{name!r}]", value) for name, value in given.items()
    }
    if not isinstance(party, str) or party not in addresses:
        raise ConfigError(f"party: expected one of {sorted(addresses)}, got {_describe(party)}")
    return addresses


_FINGERPRINT = re.compile(r"^sha256:([0-9a-f]{2}(?::?[0-9a-f]{2}){31})$")


def parse_fingerprint(path: str, raw: object) -> str:
    """Normalise ``"sha256:<hex>"`` (64 hex digits, any case, ``:`` between bytes allowed) to
    ``"sha256:<64 lower-case hex digits>"``; raise :class:`ConfigError` naming ``path``."""
    match = _FINGERPRINT.match(raw.strip().lower()) if isinstance(raw, str) else None
    if match is None:
        raise ConfigError(
            f"{path}: expected 'sha256:' and 64 hex digits (the SHA-256 of the DER "
            f"certificate, as `silo certs --self-signed` prints it), got {_describe(raw)}"
        )
    return "sha256:" + match.group(1).replace(":", "")


def parse_tls_config(raw: Mapping[str, Any] | TLSConfig | None) -> TLSConfig | None:
    """Validate ``tls_config``: ``{"cert": path, "key": path}`` and either ``"ca_cert": path``
    or ``"peer_fingerprints": {party: "sha256:<hex>"}``.

    Which parties the fingerprints must cover is checked by :func:`check_tls_parties`.
    """
    if raw is None or isinstance(raw, TLSConfig):
        return raw
    given = _expect_mapping("tls_config", raw)
    _reject_unknown(
        "tls_config", given, {"ca_cert", "cert", "key", "peer_fingerprints", "verify_identity"}
    )
    values: dict[str, str] = {}
    for key in ("cert", "key"):
        value = given.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"tls_config['{key}']: expected a file path, got {_describe(value)}")
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
        raise ConfigError(f"tls_config['ca_cert']: expected a file path, got {_describe(ca_cert)}")
    parsed: dict[str, str] | None = None
    if fingerprints is not None:
        path = "tls_config['peer_fingerprints']"
        given_prints = _expect_mapping(path, fingerprints)
        if not given_prints:
            raise ConfigError(f"{path}: expected a fingerprint per party, got an empty mapping")
        parsed = {
            party: parse_fingerprint(f"{path}[{party!r}]", value)
            for party, value in given_prints.items()
        }
    verify = _expect_bool("tls_config['verify_identity']", given.get("verify_identity", True))
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
