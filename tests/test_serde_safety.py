"""Safe values by default: every gadget of the corpus is refused by name, every benign value passes.

Each gadget is first shown to be live (plain ``pickle.loads`` runs its payload and creates its
marker), so a refusal here means something.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import silo.errors
from silo import serde
from silo.config import parse_config
from silo.errors import ConfigError, FedRemoteError, RemoteCause, SerializationError
from silo.transport.base import INLINE_LIMIT

from multiparty import PartyRun, addresses_for, collect

PROGRAMS = Path(__file__).parent / "programs"


def _load_gadgets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gadgets", PROGRAMS / "gadgets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gadgets = _load_gadgets()
GADGETS = sorted(gadgets.corpus(Path("/nonexistent")))
BENIGN = sorted(gadgets.benign())


def _round_trip(value: object, allowed: serde.AllowList = None) -> object:
    data, buffers = serde.dumps(value)
    return serde.loads(data, [bytearray(b) for b in buffers], allowed)


def _wait_for(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return path.exists()


def _release(value: Any) -> None:
    """Reap what a live gadget left behind (a child process, an open file)."""
    if isinstance(value, subprocess.Popen):
        value.wait()
    close = getattr(value, "close", None)
    if callable(close):
        close()


@pytest.mark.parametrize("name", GADGETS)
def test_gadget_is_refused_by_name_and_never_runs(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers, bait = tmp_path / "markers", tmp_path / "bait"
    markers.mkdir()
    bait.mkdir()
    gadgets.write_import_bait(bait, markers)
    monkeypatch.syspath_prepend(str(bait))
    value, refused = gadgets.corpus(markers)[name]
    data, buffers = serde.dumps(value)
    for allowed in (None, {"numpy": "*"}, {"numpy": "*", "collections": "*", "builtins": "*"}):
        with pytest.raises(SerializationError) as info:
            serde.loads(data, [bytearray(b) for b in buffers], allowed)
        assert any(f"refused to deserialise {g}:" in str(info.value) for g in refused), info.value
    time.sleep(0.05)
    assert not (markers / name).exists()
    _release(pickle.loads(data, buffers=buffers))
    assert _wait_for(markers / name), f"the {name} gadget is not live under plain pickle"
    for module in gadgets.IMPORTERS:
        sys.modules.pop(gadgets.bait(module), None)


@pytest.mark.parametrize("name", BENIGN)
def test_benign_value_round_trips_with_the_default_configuration(name: str) -> None:
    value = gadgets.benign()[name]
    assert gadgets.same(_round_trip(value), value)


def _example(cls: type) -> object | None:
    """An instance of a ``silo.errors`` class, if it can be made from plain arguments."""
    for args in (("alice",), ("alice", "why"), ("t", "m", "tb")):
        try:
            return cls(*args)
        except TypeError:
            continue
    return None


@pytest.mark.parametrize("name", silo.errors.__all__)
def test_every_silo_error_that_pickles_travels(name: str) -> None:
    cls = getattr(silo.errors, name)
    example = _example(cls)
    try:
        expected = pickle.loads(pickle.dumps(example))
    except TypeError:
        expected = None
    if example is None or expected is None:
        assert name in ("BarrierTimeoutError", "FrameRejected", "SendingFailure")
        return
    got = _round_trip(example)
    assert type(got) is cls and str(got) == str(expected) and repr(got) == repr(expected)


def test_a_remote_cause_travels_inside_its_error() -> None:
    cause = RemoteCause("ValueError", "bad", "tb")
    error = _round_trip(FedRemoteError("alice", cause))
    assert isinstance(error, FedRemoteError) and error.cause == cause


def _stream(module: str, name: str, *args: str) -> bytes:
    """A protocol-4 stream calling ``module.name(*args)`` (dotted names allowed)."""

    def text(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()

    return (
        b"\x80\x04" + text(module) + text(name) + b"\x93("
        + b"".join(text(a) for a in args) + b"tR."
    )  # fmt: skip


@pytest.mark.parametrize(
    ("module", "name", "allowed", "why"),
    [
        ("builtins", "getattr", {"builtins": "*"}, "a wildcard never admits it"),
        ("builtins", "eval", {"builtins": "*"}, "a wildcard never admits it"),
        ("posix", "system", {"posix": "*"}, "a wildcard never admits it"),
        ("os", "system", {"os": "*"}, "a wildcard never admits it"),
        ("os.path", "exists", {"os": "*"}, "a wildcard never admits it"),
        ("numpy", "load", {"numpy": "*"}, "a wildcard never admits it"),
        ("numpy.lib._npyio_impl", "os.system", {"numpy": "*"}, "a wildcard never admits it"),
        ("numpy", "ndarray.tofile", {"numpy": "*"}, "a wildcard never admits it"),
        ("numpy", "__loader__", {"numpy": "*"}, "a wildcard never admits it"),
        ("glob", "os", {"glob": ["os"]}, "module os"),
        ("numpy.testing", "assert_equal", {"numpy": "*"}, "a wildcard never admits it"),
        ("functools", "partial", {"functools": "*"}, "a wildcard never admits it"),
        ("operator", "attrgetter", {"operator": "*"}, "a wildcard never admits it"),
        ("copyreg", "_reconstructor", {"copyreg": "*"}, "a wildcard never admits it"),
        ("builtins", "getattr", {"numpy": "*"}, "neither in silo's safe set"),
    ],
)
def test_wildcards_never_admit_what_reaches_code(
    module: str, name: str, allowed: dict[str, Any], why: str
) -> None:
    with pytest.raises(SerializationError, match="refused to deserialise") as info:
        serde.loads(_stream(module, name, "x"), [], allowed)
    assert f"{module}.{name}" in str(info.value) and why in str(info.value)


def test_a_reexported_dangerous_function_is_refused_under_its_real_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reexporter.py").write_text("from os import system\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "reexporter", raising=False)
    with pytest.raises(SerializationError, match=r"reexporter\.system: .*wildcard never"):
        serde.loads(_stream("reexporter", "system", "true"), [], {"reexporter": "*"})
    with pytest.raises(SerializationError, match=r"reexporter\.system: it is posix\.system"):
        serde.loads(_stream("reexporter", "system", "true"), [], {"reexporter": ["system"]})
    assert serde.loads(_stream("posix", "system", "true"), [], {"posix": ["system"]}) == 0


def test_explicitly_named_dangerous_globals_are_admitted() -> None:
    assert serde.loads(_stream("builtins", "getattr", "ab", "upper"), [], {"builtins": ["getattr"]})
    assert serde.loads(_stream("builtins", "len", "abc"), [], {"builtins": "*"}) == 3


def test_allow_list_adds_submodules_and_types() -> None:
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    with pytest.raises(SerializationError, match=r"numpy\.ma\.core\._mareconstruct"):
        _round_trip(masked)
    out = _round_trip(masked, {"numpy": "*"})
    assert isinstance(out, np.ma.MaskedArray) and out.mask.tolist() == [False, True, False]


def test_full_trust_loads_anything() -> None:
    scale = 3
    fn = _round_trip(lambda v: v * scale, "*")
    assert callable(fn) and fn(5) == 15
    with pytest.raises(SerializationError, match=r"cloudpickle\.cloudpickle\._"):
        _round_trip(lambda v: v * scale)


#: What numpy 1.26.4 (as 1.24 and 1.25) writes under protocol 5 with out-of-band buffers: its
#: reconstructors live in ``numpy.core``, which numpy 2 still resolves but with a warning.
NUMPY_1_STREAMS: dict[str, tuple[bytes, list[bytes]]] = {
    "contiguous": (
        b"\x80\x05\x95j\x00\x00\x00\x00\x00\x00\x00\x8c\x12numpy.core.numeric\x94\x8c\x0b_frombuffe"
        b"r\x94\x93\x94(\x97\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R"
        b"\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x03\x85\x94\x8c\x01"
        b"C\x94t\x94R\x94.",
        [
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x00@"
        ],
    ),
    "strided": (
        b"\x80\x05\x95\x8e\x00\x00\x00\x00\x00\x00\x00\x8c\x15numpy.core.multiarray\x94\x8c\x0c_r"
        b"econstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94"
        b"\x87\x94R\x94(K\x01K\x03\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02i2\x94\x89\x88\x87"
        b"\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x06\x00"
        b"\x00\x02\x00\x04\x00\x94t\x94b.",
        [],
    ),
    "scalar": (
        b"\x80\x05\x95e\x00\x00\x00\x00\x00\x00\x00\x8c\x15numpy.core.multiarray\x94\x8c\x06scal"
        b"ar\x94\x93\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R"
        b"\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bC\x04\x00\x00\xc0?"
        b"\x94\x86\x94R\x94.",
        [],
    ),
    "structured": (
        b"\x80\x05\x95\xc6\x00\x00\x00\x00\x00\x00\x00\x8c\x12numpy.core.numeric\x94\x8c\x0b_fr"
        b"ombuffer\x94\x93\x94(\x97\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02V6\x94\x89\x88"
        b"\x87\x94R\x94(K\x03\x8c\x01|\x94N\x8c\x01a\x94\x8c\x01b\x94\x86\x94}\x94(h\nh\x05\x8c\x02"
        b"i2\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
        b"\x94bK\x00\x86\x94h\x0bh\x05\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03h\x11NNNJ\xff\xff\xff"
        b"\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02\x86\x94uK\x06K\x01K\x10t\x94bK\x01\x85\x94\x8c\x01C"
        b"\x94t\x94R\x94.",
        [b"\x00\x00\x00\x00\x00\x00"],
    ),
}


def test_numpy_1_pickles_load_without_a_warning() -> None:
    def load(name: str) -> Any:
        data, buffers = NUMPY_1_STREAMS[name]
        return serde.loads(data, [bytearray(b) for b in buffers], None)

    assert gadgets.same(load("contiguous"), np.arange(3.0))
    assert gadgets.same(load("strided"), np.arange(6, dtype=np.int16)[::2])
    assert gadgets.same(load("scalar"), np.float32(1.5))
    assert gadgets.same(load("structured"), np.zeros(1, dtype=[("a", "<i2"), ("b", "<f4")]))


def test_corrupt_and_truncated_streams_are_serialization_errors() -> None:
    with pytest.raises(SerializationError, match="cannot deserialise"):
        serde.loads(b"\x80\x05garbage", [], None)
    with pytest.raises(SerializationError, match="cannot deserialise"):
        serde.loads(b"\x80\x05K", [], None)
    with pytest.raises(SerializationError, match="cannot deserialise"):
        serde.loads(b"\x80\x05Q.", [], None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("*", "*"),
        ({"numpy": ["*"]}, {"numpy": "*"}),
        ({"m": ["A", "B"]}, {"m": ("A", "B")}),
        (None, None),
    ],
)
def test_allow_list_config_forms(raw: object, expected: object) -> None:
    config = parse_config({"cross_silo_comm": {"serializing_allowed_list": raw}})
    assert config.cross_silo_comm.serializing_allowed_list == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("all", r"expected \"\*\" \(trust peers fully\) or a mapping.*got 'all' \(str\)"),
        (["numpy"], r"expected a mapping, got \['numpy'\] \(list\)"),
        ({"numpy": 3}, r"\['numpy'\]: expected \"\*\" or a list of names, got 3 \(int\)"),
        ({"m": ["A", 7]}, r"\['m'\]: expected a list of names, got 7 \(int\) in \['A', 7\]"),
        ({"": "*"}, r"a module name cannot be empty, got '' \(str\)"),
    ],
)
def test_bad_allow_list_names_the_bad_value(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"cross_silo_comm": {"serializing_allowed_list": raw}})


def _run_pair(
    phase: str, tmp_path: Path, allow: object = None, timeout: float = 60.0
) -> dict[str, PartyRun]:
    """Run ``gadgets.py PHASE`` as alice and bob, two OS processes on loopback."""
    markers, bait = tmp_path / "markers", tmp_path / "bait"
    markers.mkdir()
    bait.mkdir()
    gadgets.write_import_bait(bait, markers)
    env = {
        **os.environ,
        "SILO_TEST_ADDRESSES": json.dumps(addresses_for(["alice", "bob"])),
        "MARKERS": str(markers),
        "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(bait)]),
        "PYTHONUNBUFFERED": "1",
    }
    if allow is not None:
        env["ALLOW"] = json.dumps(allow)
    started = time.monotonic()
    procs = {
        party: subprocess.Popen(
            [sys.executable, str(PROGRAMS / "gadgets.py"), phase, party],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for party in ("alice", "bob")
    }
    try:
        return {party: collect(proc, party, started, timeout) for party, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("allow", [None, {"numpy": "*"}])
def test_every_gadget_is_refused_between_two_processes(allow: object, tmp_path: Path) -> None:
    large, _ = gadgets.corpus(tmp_path)["large_frame_os_system"]
    data, buffers = serde.dumps(large)
    assert len(data) + sum(b.nbytes for b in buffers) > INLINE_LIMIT, "not the HTTP POST path"
    runs = _run_pair("corpus", tmp_path, allow)
    alice, bob = runs["alice"], runs["bob"]
    for run in runs.values():
        assert run.returncode == 0 and run.elapsed < 45, str(run)
    assert not list((tmp_path / "markers").iterdir()), "a gadget ran in bob"
    expected = gadgets.corpus(tmp_path / "markers")
    refusals = alice.result["refusals"]
    for name, (_, refused) in expected.items():
        outcome = bob.result["gadgets"][name]
        assert outcome["type"] == "SerializationError", (name, outcome, str(bob))
        assert any(f"refused to deserialise {g}:" in outcome["str"] for g in refused), outcome
        object_id = alice.result["ids"][name]
        told = [r for r in refusals if f"object {object_id}" in r]
        assert told and told[0].startswith("FrameRejected"), (name, refusals)
        assert "refused to deserialise" in told[0]
    assert bob.stderr.count("refused to deserialise") >= len(expected)
    assert alice.stderr.count("sending failure: ") >= len(expected)
    assert all(v is True for v in bob.result["benign"].values()), bob.result["benign"]
    assert sorted(bob.result["benign"]) == BENIGN


def test_full_trust_passes_user_classes_and_closures(tmp_path: Path) -> None:
    runs = _run_pair("trusted", tmp_path, "*")
    for run in runs.values():
        assert run.returncode == 0, str(run)
        assert run.result == {"point": ["UserPoint", 4], "closure": 15}


def test_errors_travel_after_dask_put_tblib_reducers_in_copyreg() -> None:
    """Dask installs tblib's reducers for every exception class in ``copyreg`` when it is
    imported (as the Dask executor does); silo's own pickles ignore them, so a receiver's
    restricted unpickler still rebuilds the errors. In a child process: it changes ``copyreg``."""
    program = (
        "import silo.errors, silo.serde as serde\n"
        "import distributed  # installs tblib's reducers in copyreg\n"
        "import copyreg\n"
        "assert copyreg.dispatch_table.get(silo.errors.ConfigError) is not None\n"
        "cause = silo.errors.RemoteCause('ValueError', 'v', '')\n"
        "errors = [silo.errors.FedRemoteError('alice', cause), silo.errors.ActorKilledError('k')]\n"
        "for value in (silo.errors.ConfigError('bad'), errors):\n"
        "    data, buffers = serde.dumps(value)\n"
        "    assert b'tblib' not in data, data\n"
        "    got = serde.loads(data, buffers, None)\n"
        "    assert repr(got) == repr(value), (got, value)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done
