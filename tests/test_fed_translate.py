"""RayFed's configuration into silo's (``silo.fed._translate``), the errors ``fed.get`` raises
(``silo.fed.exceptions``) and the shared-certificate check (``silo.fed._tls``): no sockets."""

from __future__ import annotations

import datetime
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import silo
from silo.config import RetryPolicy, parse_config
from silo.fed import exceptions as fed_exceptions
from silo.fed._tls import certified_names, check_identity
from silo.fed._translate import (
    RAY_OPTIONS_IGNORED,
    full_trust_value,
    translate_config,
    translate_options,
)
from silo.fed.exceptions import (
    FedTaskError,
    IgnoredConfigWarning,
    UnverifiedIdentityWarning,
    as_task_error,
)


def comm(**keys: Any) -> dict[str, Any]:
    return translate_config({"cross_silo_comm": keys})["cross_silo_comm"]


def silo_comm(**keys: Any) -> silo.CrossSiloCommConfig:
    return parse_config(translate_config({"cross_silo_comm": keys})).cross_silo_comm


# ---------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("key", ["timeout_ms", "timeout_in_ms"])
def test_both_timeout_spellings_become_timeout_in_ms(key: str) -> None:
    assert silo_comm(**{key: 1234}).timeout_in_ms == 1234


def test_timeout_spellings_that_agree_are_fine_and_that_disagree_are_refused() -> None:
    assert silo_comm(timeout_ms=500, timeout_in_ms=500).timeout_in_ms == 500
    with pytest.raises(silo.ConfigError, match=r"'timeout_in_ms' \(500\) and 'timeout_ms' \(9\)"):
        comm(timeout_ms=9, timeout_in_ms=500)


def test_none_values_mean_rayfed_defaults_and_are_dropped() -> None:
    parsed = silo_comm(
        messages_max_size_in_bytes=None,
        exit_on_sending_failure=None,
        http_header=None,
        timeout_in_ms=None,
    )
    assert parsed.timeout_in_ms == silo.CrossSiloCommConfig().timeout_in_ms
    assert parsed.exit_on_sending_failure is False


def test_keys_with_the_same_meaning_pass_unchanged() -> None:
    parsed = silo_comm(
        messages_max_size_in_bytes=4096,
        exit_on_sending_failure=True,
        continue_waiting_for_data_sending_on_error=True,
        expose_error_trace=True,
        http_header={"x-job": "a"},
    )
    assert parsed.messages_max_size_in_bytes == 4096
    assert parsed.exit_on_sending_failure and parsed.expose_error_trace
    assert parsed.continue_waiting_for_data_sending_on_error
    assert dict(parsed.http_header) == {"x-job": "a"}


def test_barrier_on_initializing_passes_and_none_is_dropped() -> None:
    assert parse_config(translate_config({"barrier_on_initializing": True})).barrier_on_initializing
    assert translate_config({"barrier_on_initializing": None}) == translate_config({})


# ---------------------------------------------------------------------- retry policy


def test_grpc_camel_case_retry_policy_becomes_silos() -> None:
    policy = {
        "maxAttempts": 5,
        "initialBackoff": "5s",
        "maxBackoff": "30s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = silo_comm(grpc_retry_policy=policy)
    assert parsed.retry_policy == RetryPolicy(
        max_attempts=5, initial_backoff_ms=5000, max_backoff_ms=30000, backoff_multiplier=2.0
    )


@pytest.mark.parametrize(
    ("duration", "ms"), [("0.1s", 100), (".25s", 250), ("1s", 1000), (" 2.5 s ", 2500), (3, 3000)]
)
def test_grpc_durations(duration: object, ms: int) -> None:
    assert comm(grpc_retry_policy={"initialBackoff": duration})["retry_policy"] == {
        "initial_backoff_ms": ms
    }


@pytest.mark.parametrize("duration", ["5", "5ms", "abc", -1, True, "1e9999s"])
def test_bad_durations_name_the_key(duration: object) -> None:
    with pytest.raises(silo.ConfigError, match=r"\['grpc_retry_policy'\]\['maxBackoff'\]"):
        comm(grpc_retry_policy={"maxBackoff": duration})


def test_status_codes_other_than_unavailable_are_warned() -> None:
    with pytest.warns(IgnoredConfigWarning, match=r"\['DEADLINE_EXCEEDED'\]"):
        comm(grpc_retry_policy={"retryableStatusCodes": ["UNAVAILABLE", "DEADLINE_EXCEEDED"]})


def test_unknown_retry_policy_key_and_both_forms_are_refused() -> None:
    with pytest.raises(silo.ConfigError, match="unknown key 'maxRetries'"):
        comm(grpc_retry_policy={"maxRetries": 3})
    with pytest.raises(silo.ConfigError, match="not both"):
        comm(grpc_retry_policy={"maxAttempts": 3}, retry_policy={"max_attempts": 3})


def test_bad_retry_values_are_silos_config_errors() -> None:
    with pytest.raises(silo.ConfigError, match="max_attempts"):
        silo_comm(grpc_retry_policy={"maxAttempts": 0})


def test_silos_own_retry_policy_passes() -> None:
    assert silo_comm(retry_policy={"max_attempts": 2}).retry_policy.max_attempts == 2


# ---------------------------------------------------------------------- ignored and unknown keys

IGNORED = [
    "grpc_channel_options",
    "proxy_max_restarts",
    "send_resource_label",
    "recv_resource_label",
    "use_global_proxy",
    "max_concurrency",
    "listening_address",
]


@pytest.mark.parametrize("key", IGNORED)
def test_rayfed_keys_silo_has_no_use_for_are_warned_by_name(key: str) -> None:
    with pytest.warns(IgnoredConfigWarning, match=rf"\['cross_silo_comm'\]\['{key}'\]"):
        translated = comm(**{key: 1})
    assert key not in translated


def test_rayfed_older_top_level_key_is_warned() -> None:
    with pytest.warns(IgnoredConfigWarning, match=r"config\['cross_silo_message'\]"):
        assert "cross_silo_message" not in translate_config({"cross_silo_message": {}})


def test_other_keys_pass_to_silo_which_names_a_typo() -> None:
    with pytest.raises(silo.ConfigError, match="unknown key 'timeout_in_msec'"):
        parse_config(translate_config({"cross_silo_comm": {"timeout_in_msec": 5}}))
    with pytest.raises(silo.ConfigError, match="unknown key 'barier_on_initializing'"):
        parse_config(translate_config({"barier_on_initializing": True}))


def test_bad_shapes_name_the_key() -> None:
    with pytest.raises(silo.ConfigError, match=r"config\['cross_silo_comm'\]: expected a mapping"):
        translate_config({"cross_silo_comm": [1]})
    with pytest.raises(silo.ConfigError, match="config: expected a mapping"):
        translate_config([("a", 1)])  # type: ignore[arg-type]


def test_ray_options_are_warned_and_num_returns_kept() -> None:
    with pytest.warns(IgnoredConfigWarning, match="num_cpus=2 of f"):
        assert translate_options({"num_cpus": 2, "num_returns": 3}, "f") == {"num_returns": 3}
    assert translate_options({"bogus": 1}, "f") == {"bogus": 1}, "silo's own check names it"
    assert {"num_cpus", "resources", "max_concurrency"} <= RAY_OPTIONS_IGNORED


# ---------------------------------------------------------------------- allow-list


def test_no_allow_list_trusts_peers_fully_as_rayfed_does() -> None:
    trust = full_trust_value()
    assert comm().get("serializing_allowed_list") == trust
    assert comm(serializing_allowed_list=None).get("serializing_allowed_list") == trust
    assert comm(serializing_allowed_list={"*": "*"}).get("serializing_allowed_list") == trust
    assert comm(serializing_allowed_list={"*": ["*"], "x": []}).get("serializing_allowed_list") == (
        trust
    )


def test_allow_list_modules_and_names_in_rayfeds_forms() -> None:
    allowed = comm(
        serializing_allowed_list={
            "numpy": ["*"],
            "pandas": "*",
            "torch": None,
            "fractions": ["Fraction"],
            "decimal": "Decimal",
        }
    )["serializing_allowed_list"]
    assert allowed == {
        "numpy": "*",
        "pandas": "*",
        "torch": "*",
        "fractions": ["Fraction"],
        "decimal": ["Decimal"],
    }
    parsed = parse_config({"cross_silo_comm": {"serializing_allowed_list": allowed}})
    assert parsed.cross_silo_comm.serializing_allowed_list is not None


def test_bad_allow_list_names_the_module() -> None:
    with pytest.raises(silo.ConfigError, match=r"\['serializing_allowed_list'\]\['numpy'\]"):
        comm(serializing_allowed_list={"numpy": 3})


# ---------------------------------------------------------------------- errors of fed.get


class MyError(Exception):
    def __init__(self, message: str, code: int = 7) -> None:
        super().__init__(message)
        self.code = code


class MyOSError(OSError):
    pass


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_user_error_is_an_instance_of_its_class_with_cause() -> None:
    original = _raised(MyError("boom", code=3))
    err = as_task_error(original)
    assert isinstance(err, MyError) and isinstance(err, FedTaskError)
    assert err.cause is original  # type: ignore[attr-defined]
    assert str(err) == "boom" and err.code == 3  # type: ignore[attr-defined]
    assert err.__traceback__ is original.__traceback__
    assert type(err).__name__ == "MyError" and type(err).__module__ == MyError.__module__
    assert type(as_task_error(MyError("again"))) is type(err), "one class per cause class"
    assert as_task_error(err) is err
    restored = pickle.loads(pickle.dumps(err))
    assert type(restored) is MyError and str(restored) == "boom"


def test_fed_remote_error_keeps_src_party_and_its_own_cause() -> None:
    cause = silo.RemoteCause("ValueError", "bad", "")
    remote = silo.FedRemoteError("alice", cause)
    err = as_task_error(remote)
    assert isinstance(err, silo.FedRemoteError)
    assert isinstance(err, fed_exceptions.FedRemoteError)
    assert err.cause is remote  # type: ignore[attr-defined]
    assert err.src_party == "alice"  # type: ignore[attr-defined]
    assert err.cause.cause is cause  # type: ignore[attr-defined]
    assert str(err) == "FedRemoteError occurred at alice caused by ValueError: bad"
    assert fed_exceptions.FedRemoteError is silo.FedRemoteError


def test_builtin_and_os_errors_wrap_too() -> None:
    for original in (KeyError("k"), MyOSError(2, "gone"), ZeroDivisionError("z")):
        err = as_task_error(original)
        assert isinstance(err, type(original)) and err.cause is original  # type: ignore[attr-defined]
    assert str(as_task_error(KeyError("k"))) == "'k'"


def test_keyboard_interrupt_is_not_wrapped() -> None:
    interrupt = KeyboardInterrupt()
    assert as_task_error(interrupt) is interrupt


# ---------------------------------------------------------------------- certificates


def _certificate(tmp_path: Path, name: str, cn: str, san: list[str] | None) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    path = tmp_path / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_certified_names_prefer_the_san_over_the_cn(tmp_path: Path) -> None:
    with_san = _certificate(tmp_path, "a", "ignored-cn", ["alice", "alice.example"])
    cn_only = _certificate(tmp_path, "b", "bob", None)
    assert certified_names(Path(with_san).read_bytes()) == ["alice", "alice.example"]
    assert certified_names(Path(cn_only).read_bytes()) == ["bob"]


def test_a_certificate_naming_a_party_passes_silently(tmp_path: Path) -> None:
    cert = _certificate(tmp_path, "a", "x", ["alice"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_identity({"cert": cert}, ["alice", "bob"])


def test_a_shared_certificate_warns_that_identity_is_not_verified(tmp_path: Path) -> None:
    cert = _certificate(tmp_path, "shared", "rayfed-shared", ["server.example"])
    with pytest.warns(UnverifiedIdentityWarning, match=r"names \['server.example'\], no party"):
        assert not check_identity({"cert": cert}, ["alice", "bob"])


def test_no_tls_or_an_unreadable_certificate_is_left_to_silo(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_identity(None, ["alice"])
        assert check_identity({"cert": str(tmp_path / "missing.pem")}, ["alice"])
        (tmp_path / "junk.pem").write_text("not a certificate")
        assert check_identity({"cert": str(tmp_path / "junk.pem")}, ["alice"])
