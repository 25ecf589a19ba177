"""RayFed's configuration, as RayFed programs write it, translated into silo's.

One function, :func:`translate_config`, returns the ``config`` mapping to give ``silo.init``:

* RayFed keys with a silo meaning are translated: ``timeout_ms`` (what RayFed's tests write)
  and ``timeout_in_ms``; ``grpc_retry_policy`` in gRPC's camelCase form (``maxAttempts``,
  ``initialBackoff: "5s"``, ...) into ``retry_policy``; ``serializing_allowed_list`` in RayFed's
  form (``{"module": ["*"]}``, a ``"*"`` key, no list at all) into silo's, with RayFed's meaning;
  a ``None`` value (RayFed's "use the default") is dropped.
* RayFed keys silo has no use for (gRPC channel options, proxy actors, Ray resources) are
  ignored with an :class:`IgnoredConfigWarning` naming each; never silently.
* Every other key is passed on for silo to validate, so silo's own keys work and a typo is a
  :class:`~silo.ConfigError` naming it.

A value of the wrong type raises :class:`~silo.ConfigError` naming the key path.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

from ..config import parse_config
from ..errors import ConfigError
from .exceptions import IgnoredConfigWarning

__all__ = [
    "RAY_OPTIONS_IGNORED",
    "full_trust_value",
    "translate_config",
    "translate_options",
    "warn_ignored",
]

_COMM = "config['cross_silo_comm']"

#: RayFed ``cross_silo_comm`` keys that mean nothing without gRPC, Ray and proxy actors.
_IGNORED_COMM = {
    "grpc_channel_options": "silo's channel is aiohttp, not gRPC",
    "proxy_max_restarts": "silo has no proxy actors to restart",
    "send_resource_label": "silo has no Ray resources",
    "recv_resource_label": "silo has no Ray resources",
    "use_global_proxy": "silo has no proxy actors",
    "max_concurrency": "silo has no proxy actors whose concurrency to set",
    "listening_address": "silo listens on addresses[party]",
}

#: RayFed top-level ``config`` keys silo ignores.
_IGNORED_TOP = {
    "cross_silo_message": "RayFed's older name, which current RayFed ignores too; "
    "write 'cross_silo_comm'",
}

#: Keys whose value passes to silo unchanged (``None`` means RayFed's default: dropped).
_SAME = (
    "messages_max_size_in_bytes",
    "exit_on_sending_failure",
    "continue_waiting_for_data_sending_on_error",
    "expose_error_trace",
    "http_header",
)

#: Ray task and actor options: silo runs calls in its own threads, without Ray's scheduler.
RAY_OPTIONS_IGNORED = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "memory",
        "resources",
        "accelerator_type",
        "max_calls",
        "max_retries",
        "retry_exceptions",
        "max_restarts",
        "max_task_retries",
        "max_concurrency",
        "concurrency_groups",
        "name",
        "namespace",
        "lifetime",
        "get_if_exists",
        "runtime_env",
        "scheduling_strategy",
        "placement_group",
        "placement_group_bundle_index",
        "placement_group_capture_child_tasks",
        "_metadata",
    }
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*s\s*$")
_GRPC_RETRY_KEYS = {
    "maxAttempts": "max_attempts",
    "initialBackoff": "initial_backoff_ms",
    "maxBackoff": "max_backoff_ms",
    "backoffMultiplier": "backoff_multiplier",
}
#: The gRPC status silo's retries cover: a refused, reset or broken connection.
_RETRIED_STATUSES = frozenset({"UNAVAILABLE"})


def warn_ignored(what: str, why: str) -> None:
    """Warn that silo.fed ignores ``what``, saying why (an :class:`IgnoredConfigWarning`)."""
    warnings.warn(f"silo.fed ignores {what}: {why}", IgnoredConfigWarning, stacklevel=3)


def _mapping(path: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {value!r} ({type(value).__name__})")
    return value


def _duration_ms(path: str, value: object) -> int:
    """gRPC's JSON duration (``"0.1s"``, ``"5s"``) or a number of seconds, in milliseconds."""
    seconds: float
    if isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        seconds = float(value)
    else:
        raise ConfigError(f"{path}: expected a gRPC duration such as '0.5s', got {value!r}")
    if not math.isfinite(seconds):
        raise ConfigError(f"{path}: expected a finite duration, got {value!r}")
    return round(seconds * 1000)


def _retry_policy(path: str, raw: object) -> dict[str, Any]:
    given = _mapping(path, raw)
    policy: dict[str, Any] = {}
    for key, value in given.items():
        sub = f"{path}[{key!r}]"
        if key in ("initialBackoff", "maxBackoff"):
            policy[_GRPC_RETRY_KEYS[key]] = _duration_ms(sub, value)
        elif key in ("maxAttempts", "backoffMultiplier"):
            policy[_GRPC_RETRY_KEYS[key]] = value
        elif key == "retryableStatusCodes":
            if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
                raise ConfigError(f"{sub}: expected a list of gRPC status names, got {value!r}")
            others = sorted({c.upper() for c in value} - _RETRIED_STATUSES)
            if others:
                warn_ignored(
                    f"{sub} entries {others}",
                    "silo retries what gRPC calls UNAVAILABLE (a refused, reset or broken "
                    "connection); a peer that answers is not retried",
                )
        else:
            raise ConfigError(
                f"{path}: unknown key {key!r}; expected gRPC's retryPolicy keys: "
                f"{', '.join([*_GRPC_RETRY_KEYS, 'retryableStatusCodes'])}"
            )
    return policy


def full_trust_value() -> str | None:
    """The ``serializing_allowed_list`` that makes silo unpickle peers' values with full trust.

    ``"*"`` where silo knows it (silo's restricted unpickler is then its default); ``None`` for a
    silo whose default is already full trust and which does not know ``"*"``.
    """
    try:
        parse_config({"cross_silo_comm": {"serializing_allowed_list": "*"}})
    except ConfigError:
        return None
    return "*"


def _allowed_list(path: str, raw: object) -> Any:
    """RayFed's allow-list, RayFed's meaning: none or a ``"*"`` key trusts everything; a module
    with ``"*"``, ``["*"]`` or ``None`` admits all its names; else the names listed."""
    if raw is None or raw == "*":
        return full_trust_value()
    given = _mapping(path, raw)
    if "*" in given:
        return full_trust_value()
    allowed: dict[str, Any] = {}
    for module, names in given.items():
        if names is None or names == "*" or (isinstance(names, (list, tuple)) and "*" in names):
            allowed[module] = "*"
        elif isinstance(names, str):
            allowed[module] = [names]
        elif isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            allowed[module] = list(names)
        else:
            raise ConfigError(f'{path}[{module!r}]: expected "*" or a list of names, got {names!r}')
    return allowed


def _timeout(given: Mapping[str, Any]) -> int | None:
    values = {k: given[k] for k in ("timeout_in_ms", "timeout_ms") if given.get(k) is not None}
    if len(values) == 2 and values["timeout_in_ms"] != values["timeout_ms"]:
        raise ConfigError(
            f"{_COMM}: 'timeout_in_ms' ({values['timeout_in_ms']!r}) and 'timeout_ms' "
            f"({values['timeout_ms']!r}) disagree; give one"
        )
    value = values.get("timeout_in_ms", values.get("timeout_ms"))
    return value


def _comm(raw: object) -> dict[str, Any]:
    given = _mapping(_COMM, raw)
    comm: dict[str, Any] = {}
    handled = {"timeout_in_ms", "timeout_ms", "grpc_retry_policy", "serializing_allowed_list"}
    timeout = _timeout(given)
    if timeout is not None:
        comm["timeout_in_ms"] = timeout
    if given.get("grpc_retry_policy") is not None:
        if given.get("retry_policy") is not None:
            raise ConfigError(
                f"{_COMM}: give 'grpc_retry_policy' (gRPC's form) or 'retry_policy' (silo's), "
                f"not both"
            )
        comm["retry_policy"] = _retry_policy(
            f"{_COMM}['grpc_retry_policy']", given["grpc_retry_policy"]
        )
    comm["serializing_allowed_list"] = _allowed_list(
        f"{_COMM}['serializing_allowed_list']", given.get("serializing_allowed_list")
    )
    if comm["serializing_allowed_list"] is None:
        del comm["serializing_allowed_list"]
    for key, value in given.items():
        if key in handled:
            continue
        if key in _IGNORED_COMM:
            warn_ignored(f"{_COMM}[{key!r}]", _IGNORED_COMM[key])
        elif key in _SAME:
            if value is not None:
                comm[key] = value
        else:
            comm[key] = value
    return comm


def translate_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """silo's ``config`` for a RayFed ``config``; see the module docstring.

    Warns :class:`IgnoredConfigWarning` once per ignored key; raises :class:`~silo.ConfigError`
    for a value of the wrong type, naming the key path. The result is not yet validated by silo.
    """
    given = _mapping("config", {} if config is None else config)
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key in _IGNORED_TOP:
            warn_ignored(f"config[{key!r}]", _IGNORED_TOP[key])
        elif key == "cross_silo_comm":
            continue
        elif key == "barrier_on_initializing" and value is None:
            continue
        else:
            out[key] = value
    out["cross_silo_comm"] = _comm(given.get("cross_silo_comm") or {})
    return out


def translate_options(options: Mapping[str, Any], what: str) -> dict[str, Any]:
    """Keep the call options silo has (``num_returns``); warn for each Ray option dropped.

    Anything that is neither is passed on, so silo's own check names it in a ``ValueError``.
    """
    kept: dict[str, Any] = {}
    for key, value in options.items():
        if key in RAY_OPTIONS_IGNORED:
            warn_ignored(f"the Ray option {key}={value!r} of {what}", "silo has no Ray scheduler")
        else:
            kept[key] = value
    return kept
