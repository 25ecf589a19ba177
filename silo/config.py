"""Validated, frozen configuration.

``parse_config`` turns the ``config`` mapping given to ``silo.init`` into a :class:`Config`.
Every key is checked: an unknown key or a value of the wrong type raises :class:`ConfigError`
naming the key path and what was expected. Key names follow RayFed so its users can move over.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .validate import (
    KeyPath,
    describe,
    expect_bool,
    expect_int,
    expect_mapping,
    expect_number,
    reject_unknown,
)

__all__ = [
    "Address",
    "Config",
    "CrossSiloCommConfig",
    "ExecutorConfig",
    "RetryPolicy",
    "TLSConfig",
    "check_job_name",
    "parse_config",
    "parse_executor",
]

DEFAULT_MAX_MESSAGE = 2 * 1024**3
#: The first wait before dialing a peer that does not listen yet (see connect_backoff_s).
_CONNECT_BACKOFF_S = 0.005

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

    def connect_backoff_s(self, attempt: int) -> float:
        """Waiting for a peer to start listening: poll fast at first (a refused connection on
        the same network costs little), then back off to ``max_backoff_ms``."""
        delay: float = _CONNECT_BACKOFF_S * 2.0 ** max(0, attempt - 1)
        return min(delay, max(self.max_backoff_ms / 1000, _CONNECT_BACKOFF_S))


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
    "threads": ["kind", "max_workers"],
    "processes": ["kind", "max_workers"],
    "dask": ["address", "kind", "n_workers"],
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


def _parse_retry_policy(path: KeyPath, raw: object) -> RetryPolicy:
    given = expect_mapping(path, raw)
    reject_unknown(
        path, given, ["backoff_multiplier", "initial_backoff_ms", "max_attempts", "max_backoff_ms"]
    )
    defaults = RetryPolicy()
    multiplier = expect_number(
        path / "backoff_multiplier",
        given.get("backoff_multiplier", defaults.backoff_multiplier),
        minimum=1,
    )
    policy = RetryPolicy(
        max_attempts=expect_int(
            path / "max_attempts", given.get("max_attempts", defaults.max_attempts), minimum=1
        ),
        initial_backoff_ms=expect_int(
            path / "initial_backoff_ms",
            given.get("initial_backoff_ms", defaults.initial_backoff_ms),
            minimum=0,
        ),
        max_backoff_ms=expect_int(
            path / "max_backoff_ms",
            given.get("max_backoff_ms", defaults.max_backoff_ms),
            minimum=0,
        ),
        backoff_multiplier=multiplier,
    )
    if policy.max_backoff_ms < policy.initial_backoff_ms:
        raise (path / "max_backoff_ms").error(
            f"must be >= initial_backoff_ms ({policy.initial_backoff_ms}), "
            f"got {policy.max_backoff_ms}"
        )
    return policy


def _parse_allowed_list(
    path: KeyPath, raw: object
) -> Mapping[str, tuple[str, ...] | str] | str | None:
    """``None`` (the safe set only), ``"*"`` (full trust) or ``{module: "*" or [names]}``.

    A list holding ``"*"`` (RayFed's spelling) means the module wildcard ``"*"``.
    """
    if raw is None or raw == "*":
        return raw
    if isinstance(raw, str):
        raise path.error(
            'expected "*" (trust peers fully) or a mapping of module to "*" or a '
            f"list of names, got {describe(raw)}"
        )
    given = expect_mapping(path, raw)
    allowed: dict[str, tuple[str, ...] | str] = {}
    for module, names in given.items():
        if not module:
            raise path.error(f"a module name cannot be empty, got {describe(module)}")
        if names == "*":
            allowed[module] = "*"
            continue
        if not isinstance(names, (list, tuple)):
            raise (path / module).error(f'expected "*" or a list of names, got {describe(names)}')
        for name in names:
            if not isinstance(name, str) or not name:
                raise (path / module).error(
                    f"expected a list of names, got {describe(name)} in {names!r}"
                )
        allowed[module] = "*" if "*" in names else tuple(names)
    return allowed


def _parse_http_header(path: KeyPath, raw: object) -> dict[str, str]:
    given = expect_mapping(path, raw)
    for name, value in given.items():
        if not isinstance(value, str):
            raise (path / name).error(f"expected a string, got {describe(value)}")
    return dict(given)


def _parse_comm(path: KeyPath, raw: object) -> CrossSiloCommConfig:
    given = expect_mapping(path, raw)
    defaults = CrossSiloCommConfig()
    reject_unknown(path, given, sorted(CrossSiloCommConfig.__dataclass_fields__), _RAYFED_HINTS)
    timeout_in_ms = expect_int(
        path / "timeout_in_ms", given.get("timeout_in_ms", defaults.timeout_in_ms), minimum=1
    )
    return CrossSiloCommConfig(
        timeout_in_ms=timeout_in_ms,
        messages_max_size_in_bytes=expect_int(
            path / "messages_max_size_in_bytes",
            given.get("messages_max_size_in_bytes", defaults.messages_max_size_in_bytes),
            minimum=1024,
        ),
        exit_on_sending_failure=expect_bool(
            path / "exit_on_sending_failure",
            given.get("exit_on_sending_failure", defaults.exit_on_sending_failure),
        ),
        continue_waiting_for_data_sending_on_error=expect_bool(
            path / "continue_waiting_for_data_sending_on_error",
            given.get(
                "continue_waiting_for_data_sending_on_error",
                defaults.continue_waiting_for_data_sending_on_error,
            ),
        ),
        expose_error_trace=expect_bool(
            path / "expose_error_trace",
            given.get("expose_error_trace", defaults.expose_error_trace),
        ),
        serializing_allowed_list=_parse_allowed_list(
            path / "serializing_allowed_list", given.get("serializing_allowed_list")
        ),
        http_header=_parse_http_header(path / "http_header", given.get("http_header", {})),
        retry_policy=_parse_retry_policy(path / "retry_policy", given.get("retry_policy", {})),
        heartbeat_interval_ms=_heartbeat_interval(path, given, timeout_in_ms),
    )


def _heartbeat_interval(path: KeyPath, given: Mapping[str, Any], timeout_in_ms: int) -> int:
    """``heartbeat_interval_ms``: as given, below ``timeout_in_ms``; when not given, 1000 or a
    quarter of ``timeout_in_ms`` when that is shorter, so a short timeout never declares a live
    peer lost between two heartbeats."""
    key = path / "heartbeat_interval_ms"
    if "heartbeat_interval_ms" not in given:
        return min(CrossSiloCommConfig.heartbeat_interval_ms, max(1, timeout_in_ms // 4))
    interval = expect_int(key, given["heartbeat_interval_ms"], minimum=1)
    if interval >= timeout_in_ms:
        raise key.error(
            f"expected an interval below timeout_in_ms ({timeout_in_ms}), got {interval}: "
            f"a peer would be declared lost between two of its heartbeats"
        )
    return interval


def parse_executor(path: KeyPath, raw: object) -> ExecutorConfig:
    """Validate ``config["executor"]``; raises :class:`ConfigError` naming the bad value."""
    given = expect_mapping(path, raw)
    kind = given.get("kind", "threads")
    if kind not in EXECUTOR_KEYS:
        raise (path / "kind").error(
            f"expected one of {', '.join(EXECUTOR_KEYS)}, got {describe(kind)}"
        )
    reject_unknown(path, given, EXECUTOR_KEYS[kind])
    if kind != "dask":
        workers = given.get("max_workers")
        if workers is not None:
            workers = expect_int(path / "max_workers", workers, minimum=1)
        return ExecutorConfig(kind=kind, max_workers=workers)
    address = given.get("address")
    if address is None:
        raise (path / "address").error(
            "required for kind 'dask': the scheduler's 'tcp://host:port', "
            "or 'local' for a cluster of this party's own"
        )
    if not isinstance(address, str) or not address.strip():
        raise (path / "address").error(
            f"expected 'tcp://host:port' or 'local', got {describe(address)}"
        )
    n_workers = expect_int(path / "n_workers", given.get("n_workers", 2), minimum=1)
    if "n_workers" in given and address != "local":
        raise (path / "n_workers").error(
            f"only for address 'local'; the cluster at {address} has its own workers"
        )
    if importlib.util.find_spec("distributed") is None:
        raise (path / "kind").error(
            "'dask' needs the Dask distributed client, which is not installed: "
            "pip install silo[dask]"
        )
    return ExecutorConfig(kind="dask", address=address, n_workers=n_workers)


def parse_config(raw: Mapping[str, Any] | Config | None, *, path: KeyPath | None = None) -> Config:
    """Validate the ``config`` mapping of ``silo.init`` (or of a federation file, whose
    :class:`KeyPath` names its keys the file's way).

    Raises :class:`ConfigError` naming the key path (``config['cross_silo_comm']['x']``) and
    what was expected, for an unknown key or a value of the wrong type.
    """
    path = KeyPath("config") if path is None else path
    if raw is None:
        return Config()
    if isinstance(raw, Config):
        return raw
    given = expect_mapping(path, raw)
    reject_unknown(
        path,
        given,
        [
            "allow_plaintext",
            "barrier_on_initializing",
            "cross_silo_comm",
            "executor",
            "slow_get_warning_s",
        ],
        _RAYFED_HINTS,
    )
    return Config(
        cross_silo_comm=_parse_comm(path / "cross_silo_comm", given.get("cross_silo_comm", {})),
        barrier_on_initializing=expect_bool(
            path / "barrier_on_initializing", given.get("barrier_on_initializing", False)
        ),
        allow_plaintext=expect_bool(path / "allow_plaintext", given.get("allow_plaintext", False)),
        slow_get_warning_s=expect_number(
            path / "slow_get_warning_s",
            given.get("slow_get_warning_s", Config.slow_get_warning_s),
            minimum=0,
            inclusive=False,
            what="a number of seconds",
        ),
        executor=parse_executor(path / "executor", given.get("executor", {})),
    )


_JOB_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_job_name(value: object, path: KeyPath | str = "job_name") -> str:
    """A job name: 1-128 ASCII letters, digits, ``.``, ``_`` or ``-``.

    Raises :class:`ConfigError` naming ``path`` and the value otherwise (an empty name, a space
    or CRLF that HTTP would strip from the header, ``/``, non-ASCII, too long).
    """
    if not isinstance(value, str) or _JOB_NAME.fullmatch(value) is None:
        raise ConfigError(
            f"{path}: expected 1-128 characters of letters, digits, '.', '_' or '-', "
            f"got {describe(value)}"
        )
    return value
