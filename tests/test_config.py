"""Configuration is validated key by key; errors name the key and what was expected."""

from __future__ import annotations

from typing import Any

import pytest

from silo.config import Config, RetryPolicy, parse_config
from silo.endpoints import parse_addresses, parse_tls_config
from silo.errors import ConfigError


def test_defaults_follow_rayfed() -> None:
    config = parse_config(None)
    assert config == Config()
    comm = config.cross_silo_comm
    assert comm.timeout_in_ms == 60000
    assert not comm.exit_on_sending_failure
    assert not comm.continue_waiting_for_data_sending_on_error
    assert not comm.expose_error_trace
    assert comm.serializing_allowed_list is None
    assert not config.barrier_on_initializing


def test_every_key_is_taken() -> None:
    config = parse_config(
        {
            "barrier_on_initializing": True,
            "cross_silo_comm": {
                "timeout_in_ms": 1000,
                "messages_max_size_in_bytes": 4096,
                "exit_on_sending_failure": True,
                "continue_waiting_for_data_sending_on_error": True,
                "expose_error_trace": True,
                "serializing_allowed_list": {"numpy": "*", "m": ["A"]},
                "http_header": {"X-Org": "alice"},
                "retry_policy": {
                    "max_attempts": 3,
                    "initial_backoff_ms": 10,
                    "max_backoff_ms": 20,
                    "backoff_multiplier": 1.5,
                },
            },
        }
    )
    comm = config.cross_silo_comm
    assert config.barrier_on_initializing
    assert comm.timeout_s == 1.0 and comm.messages_max_size_in_bytes == 4096
    assert comm.serializing_allowed_list == {"numpy": "*", "m": ("A",)}
    assert comm.http_header == {"X-Org": "alice"}
    assert comm.retry_policy == RetryPolicy(3, 10, 20, 1.5)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"nope": 1}, r"config: unknown key 'nope'"),
        (
            {"cross_silo_comm": {"timeout_ms": 5}},
            r"\['cross_silo_comm'\]: unknown key 'timeout_ms'",
        ),
        ({"cross_silo_comm": {"grpc_retry_policy": {}}}, r"silo calls it 'retry_policy'"),
        (
            {"cross_silo_comm": {"timeout_in_ms": "fast"}},
            r"\['timeout_in_ms'\]: expected an integer >= 1, got 'fast' \(str\)",
        ),
        ({"cross_silo_comm": {"timeout_in_ms": 0}}, r"\['timeout_in_ms'\]: expected an integer"),
        ({"cross_silo_comm": {"timeout_in_ms": True}}, r"got True \(bool\)"),
        (
            {"cross_silo_comm": {"expose_error_trace": "yes"}},
            r"\['expose_error_trace'\]: expected true or false, got 'yes'",
        ),
        (
            {"cross_silo_comm": {"messages_max_size_in_bytes": 10}},
            r"\['messages_max_size_in_bytes'\]: expected an integer >= 1024",
        ),
        (
            {"cross_silo_comm": {"serializing_allowed_list": {"numpy": 3}}},
            r"\['serializing_allowed_list'\]\['numpy'\]: expected \"\*\" or a list of names",
        ),
        (
            {"cross_silo_comm": {"http_header": {"X": 1}}},
            r"\['http_header'\]\['X'\]: expected a string",
        ),
        (
            {"cross_silo_comm": {"retry_policy": {"max_attempts": 0}}},
            r"\['retry_policy'\]\['max_attempts'\]: expected an integer >= 1",
        ),
        (
            {"cross_silo_comm": {"retry_policy": {"backoff_multiplier": 0.5}}},
            r"\['backoff_multiplier'\]: expected a number >= 1",
        ),
        (
            {"cross_silo_comm": {"retry_policy": {"initial_backoff_ms": 50, "max_backoff_ms": 10}}},
            r"\['max_backoff_ms'\]: must be >= initial_backoff_ms",
        ),
        ({"cross_silo_comm": {"retry_policy": {"jitter": 1}}}, r"unknown key 'jitter'"),
        ({"barrier_on_initializing": 1}, r"\['barrier_on_initializing'\]: expected true or false"),
        ({"cross_silo_comm": []}, r"\['cross_silo_comm'\]: expected a mapping"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_config({"unknown": 1})


@pytest.mark.parametrize(
    ("addresses", "party", "message"),
    [
        ({"alice": "127.0.0.1"}, "alice", r"addresses\['alice'\]: expected 'host:port'"),
        ({"alice": "127.0.0.1:0"}, "alice", r"port from 1 to 65535"),
        ({"alice": "127.0.0.1:99999"}, "alice", r"port from 1 to 65535"),
        ({"alice": 11010}, "alice", r"got 11010 \(int\)"),
        ({"alice": "127.0.0.1:11010"}, "carol", r"party: expected one of \['alice'\], got 'carol'"),
        ({}, "alice", r"at least one party"),
        ("alice", "alice", r"addresses: expected a mapping"),
    ],
)
def test_bad_addresses(addresses: Any, party: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_addresses(addresses, party)


def test_addresses_accept_scheme_and_ipv6() -> None:
    parsed = parse_addresses({"a": "http://10.0.0.1:80", "b": "[::1]:9000"}, "a")
    assert str(parsed["a"]) == "10.0.0.1:80"
    assert (parsed["b"].host, parsed["b"].port) == ("::1", 9000)


def test_tls_config_needs_three_paths() -> None:
    assert parse_tls_config(None) is None
    tls = parse_tls_config({"ca_cert": "ca.pem", "cert": "a.pem", "key": "a.key"})
    assert tls is not None and tls.cert == "a.pem"
    with pytest.raises(ConfigError, match=r"tls_config\['key'\]: expected a file path"):
        parse_tls_config({"ca_cert": "ca.pem", "cert": "a.pem"})
    with pytest.raises(ConfigError, match=r"tls_config: unknown key 'password'"):
        parse_tls_config({"ca_cert": "c", "cert": "c", "key": "k", "password": "x"})


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(
        max_attempts=5, initial_backoff_ms=100, max_backoff_ms=300, backoff_multiplier=2.0
    )
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
