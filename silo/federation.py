"""Federation files: the YAML that ``python -m silo run`` reads.

:func:`load_federation` reads one file into a frozen :class:`Federation`. Every problem raises
:class:`~silo.errors.ConfigError` whose message names the file, the key (dotted:
``parties.bob.address``) and what was expected. Values shared with ``silo.init`` are checked by
the same functions ``init`` uses (:mod:`silo.config`). :mod:`silo.program` imports the program
and returns its entry point.

The schema (every key, type and default) is documented in ``docs/cli.md``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from .config import (
    Address,
    Config,
    ExecutorConfig,
    TLSConfig,
    check_job_name,
    parse_config,
    parse_executor,
)
from .endpoints import check_plaintext, parse_address, parse_fingerprint
from .errors import ConfigError
from .log import LEVELS
from .transport.tls import file_fingerprint
from .validate import KeyPath, describe, expect_mapping, expect_string, reject_unknown

__all__ = [
    "Federation",
    "PartySpec",
    "ProgramSpec",
    "is_local_host",
    "load_federation",
]

_TOP_KEYS = {
    "job_name": "1-128 letters, digits, '.', '_' or '-' naming the job",
    "program": "a file path or 'pkg.module:func'",
    "parties": "a mapping of party name to {address: 'host:port'}",
    "party": "the party to run (optional)",
    "cross_silo_comm": "a mapping (optional)",
    "barrier_on_initializing": "true or false (optional)",
    "allow_plaintext": "true or false (optional)",
    "slow_get_warning_s": "a number of seconds > 0 (optional)",
    "executor": "a mapping {kind: threads|processes|dask, ...} for every party (optional)",
    "tls": "a mapping {ca_cert: path} or {peer_fingerprints: {party: 'sha256:...'}} (optional)",
    "logging": "a mapping {level: name} (optional)",
}
_REQUIRED = ("job_name", "program", "parties")
_PARTY_KEYS = ("address", "cert", "key", "executor")
_LOCAL_HOSTS = frozenset({"localhost", "::1", "ip6-localhost"})
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class PartySpec:
    """One entry of ``parties``: its address, and its TLS certificate and key if any."""

    name: str
    address: Address
    cert: Path | None = None
    key: Path | None = None
    #: ``parties.NAME.executor``, or ``None`` to use the top-level ``executor``.
    executor: ExecutorConfig | None = None


@dataclass(frozen=True)
class ProgramSpec:
    """The program to run: a file (``path``) or an importable ``module``, and the function."""

    path: Path | None
    module: str | None
    func: str = "main"

    def __str__(self) -> str:
        return f"{self.path if self.path is not None else self.module}:{self.func}"


@dataclass(frozen=True)
class Federation:
    """A validated federation file. ``source`` is the file as the user named it."""

    source: str
    job_name: str
    program: ProgramSpec
    parties: Mapping[str, PartySpec]
    party: str | None
    config: Config
    ca_cert: Path | None
    logging_level: str
    peer_fingerprints: Mapping[str, str] | None = None

    @property
    def tls(self) -> bool:
        """Whether the parties talk TLS (``tls`` is set, in either form)."""
        return self.ca_cert is not None or self.peer_fingerprints is not None

    @property
    def addresses(self) -> dict[str, str]:
        """``{party: "host:port"}`` as ``silo.init`` takes it."""
        return {name: str(spec.address) for name, spec in self.parties.items()}

    @property
    def all_local(self) -> bool:
        """Whether every party's address is on this machine (loopback)."""
        return all(is_local_host(spec.address.host) for spec in self.parties.values())

    def config_for(self, party: str) -> Config:
        """``config`` for ``party``: with its own ``executor`` when ``parties.NAME`` gives one."""
        executor = self.parties[party].executor
        if executor is None:
            return self.config
        return dataclasses.replace(self.config, executor=executor)

    def check_plaintext(self) -> None:
        """Without ``tls``, raise :class:`ConfigError` naming the first address that is not a
        loopback address, unless the file says ``allow_plaintext: true``."""
        if self.tls:
            return
        addresses = {name: spec.address for name, spec in self.parties.items()}
        try:
            check_plaintext(addresses, None, self.config, key="parties.{party}.address")
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None

    def check_party(self, party: str, *, key: str = "--party") -> str:
        """Return ``party`` if the file names it, else raise :class:`ConfigError` naming ``key``."""
        if party not in self.parties:
            raise ConfigError(
                f"{self.source}: {key}: expected one of {', '.join(self.parties)}, got {party!r}"
            )
        return party

    def tls_for(self, party: str) -> TLSConfig | None:
        """The ``tls_config`` for ``party``, or ``None`` without TLS.

        Raises :class:`ConfigError` naming the key when one of its files does not exist, or when
        the party's certificate does not have the fingerprint ``tls.peer_fingerprints`` gives.
        """
        if not self.tls:
            return None
        spec = self.parties[party]
        assert spec.cert is not None and spec.key is not None
        for key, path in (
            ("tls.ca_cert", self.ca_cert),
            (f"parties.{party}.cert", spec.cert),
            (f"parties.{party}.key", spec.key),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"{self.source}: {key}: expected an existing file, got '{path}'")
        if self.peer_fingerprints is not None:
            key = f"{self.source}: parties.{party}.cert"
            actual = file_fingerprint(str(spec.cert), key)
            if actual != self.peer_fingerprints[party]:
                raise ConfigError(
                    f"{self.source}: tls.peer_fingerprints.{party}: "
                    f"{self.peer_fingerprints[party]} is not the fingerprint of '{spec.cert}' "
                    f"({actual})"
                )
        return TLSConfig(
            ca_cert=str(self.ca_cert) if self.ca_cert is not None else None,
            cert=str(spec.cert),
            key=str(spec.key),
            peer_fingerprints=self.peer_fingerprints,
        )


def is_local_host(host: str) -> bool:
    """``127.x.y.z``, ``localhost`` and ``::1`` are this machine."""
    return host.lower() in _LOCAL_HOSTS or host.startswith("127.")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str | int | float | bool):
            continue
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


class _Checker:
    """Names keys the file's way (``fed.yaml: parties.alice.address``) for :mod:`silo.validate`,
    and resolves paths against the file's folder."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base
        self.top = KeyPath.in_file(source)

    def at(self, key: str | None) -> KeyPath:
        return self.top if key is None else self.top / key

    def error(self, key: str, expected: str) -> ConfigError:
        return self.at(key).error(expected)

    def mapping(self, key: str, value: object) -> Mapping[str, Any]:
        return expect_mapping(self.at(key), value)

    def known(self, key: str | None, given: Mapping[str, Any], known: list[str]) -> None:
        reject_unknown(self.at(key), given, known)

    def string(self, key: str, value: object) -> str:
        return expect_string(self.at(key), value)

    def path(self, key: str, value: object) -> Path:
        return self.base / Path(self.string(key, value)).expanduser()


def load_federation(file: str | Path) -> Federation:
    """Read and validate a federation file.

    Raises :class:`ConfigError` (its message names the file, the key and what was expected) for
    a missing or unreadable file, malformed YAML, a missing or unknown key, a value of the wrong
    type, a program file that does not exist, or TLS settings that are incomplete.
    """
    source = str(file)
    path = Path(file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read the federation file: {reason}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {_yaml_reason(exc)}") from None
    check = _Checker(source, path.resolve().parent)
    if raw is None:
        raise ConfigError(f"{source}: expected a mapping with {', '.join(_REQUIRED)}; it is empty")
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping with {', '.join(_REQUIRED)} at the top level, "
            f"got {describe(raw)}"
        )
    top = check.mapping("(top level)", raw)
    check.known(None, top, list(_TOP_KEYS))
    for key in _REQUIRED:
        if key not in top:
            raise check.error(key, f"missing; expected {_TOP_KEYS[key]}")
    ca_cert, fingerprints = _parse_tls(check, top.get("tls"))
    parties = _parse_parties(check, top["parties"], tls=top.get("tls") is not None)
    if fingerprints is not None:
        _check_fingerprint_parties(check, fingerprints, parties)
    party = top.get("party")
    if party is not None and party not in parties:
        raise check.error("party", f"expected one of {', '.join(parties)}, got {describe(party)}")
    config = parse_config(
        {
            "cross_silo_comm": top.get("cross_silo_comm") or {},
            "barrier_on_initializing": top.get("barrier_on_initializing", False),
            "allow_plaintext": top.get("allow_plaintext", False),
            "slow_get_warning_s": top.get("slow_get_warning_s", Config.slow_get_warning_s),
            "executor": top.get("executor") or {},
        },
        path=check.top,
    )
    return Federation(
        source=source,
        job_name=check_job_name(top["job_name"], check.at("job_name")),
        program=_parse_program(check, top["program"]),
        parties=MappingProxyType(parties),
        party=party,
        config=config,
        ca_cert=ca_cert,
        logging_level=_parse_logging(check, top.get("logging")),
        peer_fingerprints=fingerprints,
    )


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _parse_parties(check: _Checker, raw: object, *, tls: bool) -> dict[str, PartySpec]:
    given = check.mapping("parties", raw)
    if not given:
        raise check.error("parties", "expected at least one party, got an empty mapping")
    parties: dict[str, PartySpec] = {}
    owner_of: dict[Address, str] = {}
    for name, entry in given.items():
        key = f"parties.{name}"
        if not name.strip():
            raise check.error("parties", f"expected non-empty party names, got {name!r}")
        fields = check.mapping(key, entry)
        check.known(key, fields, list(_PARTY_KEYS))
        if "address" not in fields:
            raise check.error(f"{key}.address", "missing; expected 'host:port'")
        address = parse_address(check.at(f"{key}.address"), fields["address"])
        if address in owner_of:
            raise check.error(
                f"{key}.address",
                f"expected a distinct address, {address} is also {owner_of[address]}'s",
            )
        owner_of[address] = name
        cert = check.path(f"{key}.cert", fields["cert"]) if "cert" in fields else None
        tls_key = check.path(f"{key}.key", fields["key"]) if "key" in fields else None
        if tls and (cert is None or tls_key is None):
            missing = "cert" if cert is None else "key"
            raise check.error(f"{key}.{missing}", "missing; expected a file path since tls is set")
        if not tls and (cert is not None or tls_key is not None):
            present = "cert" if cert is not None else "key"
            raise check.error(
                f"{key}.{present}", "needs tls.ca_cert or tls.peer_fingerprints as well"
            )
        executor = None
        if "executor" in fields:
            executor = parse_executor(check.at(f"{key}.executor"), fields["executor"])
        parties[name] = PartySpec(name, address, cert, tls_key, executor)
    return parties


def _parse_tls(check: _Checker, raw: object) -> tuple[Path | None, dict[str, str] | None]:
    """``tls``: ``{ca_cert: path}`` or ``{peer_fingerprints: {party: "sha256:..."}}``."""
    if raw is None:
        return None, None
    given = check.mapping("tls", raw)
    check.known("tls", given, ["ca_cert", "peer_fingerprints"])
    if ("ca_cert" in given) == ("peer_fingerprints" in given):
        raise check.error(
            "tls",
            "expected exactly one of ca_cert (the path of the CA certificate) and "
            "peer_fingerprints (a mapping of party to 'sha256:...'), got "
            + ("both" if given else "neither"),
        )
    if "ca_cert" in given:
        return check.path("tls.ca_cert", given["ca_cert"]), None
    prints = check.mapping("tls.peer_fingerprints", given["peer_fingerprints"])
    parsed: dict[str, str] = {}
    for party, value in prints.items():
        parsed[party] = parse_fingerprint(check.at(f"tls.peer_fingerprints.{party}"), value)
    return None, parsed


def _check_fingerprint_parties(
    check: _Checker, fingerprints: Mapping[str, str], parties: Mapping[str, PartySpec]
) -> None:
    for party in fingerprints:
        if party not in parties:
            raise check.error(
                f"tls.peer_fingerprints.{party}",
                f"expected a party of the file ({', '.join(parties)})",
            )
    for party in parties:
        if party not in fingerprints:
            raise check.error(
                f"tls.peer_fingerprints.{party}",
                "missing; every party needs one (`python -m silo certs FILE --self-signed` "
                "prints them)",
            )


def _parse_logging(check: _Checker, raw: object) -> str:
    if raw is None:
        return "info"
    given = check.mapping("logging", raw)
    check.known("logging", given, ["level"])
    level = given.get("level", "info")
    if not isinstance(level, str) or level.lower() not in LEVELS:
        raise check.error(
            "logging.level", f"expected one of {', '.join(LEVELS)}, got {describe(level)}"
        )
    return level.lower()


def _parse_program(check: _Checker, raw: object) -> ProgramSpec:
    text = check.string("program", raw).strip()
    if text.endswith(".py") or ":" not in text:
        target, sep, func = text, "", "main"
    else:
        target, sep, func = text.rpartition(":")
    if sep and not func.isidentifier():
        raise check.error(
            "program", f"expected a function name after ':', got {func!r} in {text!r}"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = check.base / Path(target).expanduser()
        if not path.is_file():
            raise check.error(
                "program", f"expected an existing Python file, got {text!r} (looked for '{path}')"
            )
        return ProgramSpec(path=path, module=None, func=func)
    if not _DOTTED.match(target):
        raise check.error(
            "program",
            f"expected a file path ending in .py or 'pkg.module:func', got {describe(raw)}",
        )
    return ProgramSpec(path=None, module=target, func=func)
