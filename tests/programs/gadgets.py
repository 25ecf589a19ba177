"""Malicious and benign values, and a two-party program that sends each one from alice to bob.

Every gadget, if unpickled by plain ``pickle.loads``, creates the file ``MARKERS/<name>``. The
corpus is importable (``corpus``, ``benign``) for the unit tests, and the file runs as one party:
``gadgets.py PHASE PARTY`` with ``SILO_TEST_ADDRESSES``, ``MARKERS`` and ``ALLOW`` (the JSON
``serializing_allowed_list``, or absent) in the environment. Phases: ``corpus`` (alice's remote
function returns every gadget, then every benign value; bob gets each) and ``trusted`` (user
classes and closures under ``"*"``). Results are ``RESULT <json>`` lines, as in scenarios.py.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import copyreg
import datetime
import decimal
import fractions
import functools
import importlib
import json
import operator
import os
import pickle
import posix
import runpy
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np

#: Gadgets that import a module: each imports its own bait, which creates its marker.
IMPORTERS = (
    "builtins_import",
    "importlib_import_module",
    "runpy_run_module",
    "cloudpickle_subimport",
)


class Call:
    """Pickles as ``func(*args)``: unpickling it calls ``func``. Callable, so it can be nested as
    the function of another ``Call`` (a chain: ``Call(Call(getattr, m, "system"), cmd)``)."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)

    def __call__(self, *args: Any) -> Any:
        raise AssertionError("a gadget is only ever unpickled")


def _pickle_call(module: str, name: str, arg: str) -> bytes:
    """A protocol-0 stream calling ``module.name(arg)``: printable text, so a file can hold it."""
    return f"c{module}\n{name}\n(V{arg}\ntR.".encode()


def bait(name: str) -> str:
    return f"silo_gadget_bait_{name}"


def write_import_bait(directory: Path, markers: Path) -> None:
    """Modules in ``directory`` that create ``markers/<gadget>`` when imported."""
    for name in IMPORTERS:
        code = f"open({str(markers / name)!r}, 'w').close()\n"
        (directory / f"{bait(name)}.py").write_text(code)


def corpus(markers: Path) -> dict[str, tuple[object, tuple[str, ...]]]:
    """``{gadget: (value, refused globals one of which the refusal must name)}``."""

    def sh(name: str) -> str:
        return f"touch {markers / name}"

    def py(name: str) -> str:
        return f"open({str(markers / name)!r}, 'w').close()"

    imp = Call(builtins.__import__, "os")
    by_value = eval(f"lambda: __import__('os').system({sh('cloudpickle_by_value')!r})")
    saved = str(markers / "numpy_savetxt.pkl")
    return {
        "getattr_import_chain": (
            Call(Call(getattr, imp, "system"), sh("getattr_import_chain")),
            ("builtins.getattr",),
        ),
        "functools_partial": (
            Call(functools.partial(os.system, sh("functools_partial"))),
            ("functools.partial",),
        ),
        "operator_attrgetter": (
            Call(Call(operator.attrgetter("system"), imp), sh("operator_attrgetter")),
            ("operator.attrgetter",),
        ),
        "operator_methodcaller": (
            Call(operator.methodcaller("system", sh("operator_methodcaller")), imp),
            ("operator.methodcaller",),
        ),
        "copyreg_reconstructor": (
            Call(
                copyreg._reconstructor,  # type: ignore[attr-defined]
                subprocess.Popen,
                subprocess.Popen,
                ["sh", "-c", sh("copyreg_reconstructor")],
            ),
            ("copyreg._reconstructor",),
        ),
        "os_system": (Call(os.system, sh("os_system")), ("posix.system", "os.system")),
        "os_popen": (Call(os.popen, sh("os_popen")), ("os.popen",)),
        "posix_system": (Call(posix.system, sh("posix_system")), ("posix.system",)),
        "subprocess_check_output": (
            Call(subprocess.check_output, ["sh", "-c", sh("subprocess_check_output")]),
            ("subprocess.check_output",),
        ),
        "subprocess_popen": (
            Call(subprocess.Popen, ["sh", "-c", sh("subprocess_popen")]),
            ("subprocess.Popen",),
        ),
        "builtins_eval": (Call(eval, py("builtins_eval")), ("builtins.eval",)),
        "builtins_exec": (Call(exec, py("builtins_exec")), ("builtins.exec",)),
        "builtins_compile": (
            Call(Call(types.FunctionType, Call(compile, py("builtins_compile"), "g", "exec"), {})),
            ("cloudpickle.cloudpickle._builtin_type", "types.FunctionType", "builtins.compile"),
        ),
        "builtins_open": (Call(open, str(markers / "builtins_open"), "w"), ("io.open",)),
        "builtins_import": (
            Call(builtins.__import__, bait("builtins_import")),
            ("builtins.__import__",),
        ),
        "importlib_import_module": (
            Call(importlib.import_module, bait("importlib_import_module")),
            ("importlib.import_module",),
        ),
        "runpy_run_module": (
            Call(runpy.run_module, bait("runpy_run_module")),
            ("runpy.run_module",),
        ),
        "nested_pickle_loads": (
            Call(pickle.loads, pickle.dumps(Call(os.system, sh("nested_pickle_loads")))),
            ("_pickle.loads", "pickle.loads"),
        ),
        "cloudpickle_by_value": (
            Call(by_value),
            ("cloudpickle.cloudpickle._make_function", "cloudpickle.cloudpickle._builtin_type"),
        ),
        "cloudpickle_subimport": (
            Call(cloudpickle.cloudpickle.subimport, bait("cloudpickle_subimport")),
            ("cloudpickle.cloudpickle.subimport",),
        ),
        "large_frame_os_system": (
            (np.zeros(5 * 1024 * 1024 // 8), Call(os.system, sh("large_frame_os_system"))),
            ("posix.system",),
        ),
        "numpy_savetxt_then_load": (
            (
                Call(
                    np.savetxt,
                    saved,
                    [],
                    "%s",
                    " ",
                    "\n",
                    _pickle_call("posix", "system", sh("numpy_savetxt_then_load")).decode(),
                    "",
                    "",
                ),
                Call(np.load, saved, None, True),
            ),
            ("numpy.savetxt",),
        ),
    }


def benign() -> dict[str, object]:
    """Values every receiver admits with the default configuration."""
    structured = np.zeros(3, dtype=[("id", "<i4"), ("pos", "<f8", (2,)), ("tag", "S3")])
    structured["id"] = [1, 2, 3]
    structured["tag"] = [b"a", b"bb", b"ccc"]
    return {
        "int": 42,
        "big_int": 2**100,
        "float": 1.5,
        "str": "héllo",
        "none": None,
        "bool": True,
        "complex": 1 + 2j,
        "nested": {"l": [1, (2, 3.0)], "s": {1, 2}, "f": frozenset({"x"}), "t": ((),)},
        "bytes": b"\x00\xffbytes",
        "bytearray": bytearray(b"mutable"),
        "datetime": datetime.datetime(2024, 5, 6, 7, 8, 9, 10),
        "date": datetime.date(2024, 5, 6),
        "time": datetime.time(7, 8, 9),
        "timedelta": datetime.timedelta(days=1, seconds=2),
        "aware_datetime": datetime.datetime(
            2024, 5, 6, tzinfo=datetime.timezone(datetime.timedelta(hours=2), "CEST")
        ),
        "utc_datetime": datetime.datetime(2024, 5, 6, tzinfo=datetime.timezone.utc),
        "decimal": decimal.Decimal("3.14159"),
        "fraction": fractions.Fraction(22, 7),
        "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "ordered_dict": collections.OrderedDict([("b", 1), ("a", 2)]),
        "deque": collections.deque([1, 2, 3], maxlen=5),
        "defaultdict": collections.defaultdict(list, {"k": [1]}),
        "counter": collections.Counter("abracadabra"),
        "range_slice": (range(1, 10, 2), slice(1, None, 3)),
        "float64_array": np.arange(10, dtype=np.float64),
        "int8_matrix": np.arange(12, dtype=np.int8).reshape(3, 4),
        "bool_array": np.array([True, False]),
        "complex_array": np.array([1 + 1j, 2 - 2j], dtype=np.complex64),
        "unicode_array": np.array(["ab", "c"]),
        "datetime64_array": np.array(["2024-01-01", "2024-02-01"], dtype="datetime64[D]"),
        "structured_array": structured,
        "structured_record": structured[1],
        "dtype": np.dtype([("x", "<f4"), ("y", ">i2", (3,))]),
        "zero_d_array": np.array(7.5),
        "non_contiguous": np.arange(30).reshape(5, 6)[::2, 1::2],
        "fortran_array": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "object_array": np.array([1, "two", (3,)], dtype=object),
        "large_array": np.arange(5 * 1024 * 1024 // 8 + 1, dtype=np.float64),
        "numpy_scalars": (np.float32(1.5), np.int64(-3), np.bool_(True), np.complex128(1j)),
        "numpy_datetime": (np.datetime64("2024-01-01T10:00"), np.timedelta64(3, "s")),
    }


def same(a: object, b: object) -> bool:
    """Equal in value and type, arrays included (dtype, shape and contents)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple))
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, collections.deque):
        assert isinstance(b, collections.deque)
        return a.maxlen == b.maxlen and list(a) == list(b)
    if isinstance(a, collections.defaultdict):
        assert isinstance(b, collections.defaultdict)
        return a.default_factory is b.default_factory and a == b
    return bool(a == b)


# ----------------------------------------------------------------------------------------------
# The program run by each party.


def report(value: Any) -> None:
    print("RESULT " + json.dumps(value), flush=True)


def describe(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "str": str(exc)}


async def run_corpus(party: str, markers: Path) -> None:
    import silo

    gadgets = corpus(markers)
    values = benign()

    @silo.remote
    def make_gadget(name: str) -> object:
        return gadgets[name][0]

    @silo.remote
    def make_benign(name: str) -> object:
        return values[name]

    async with init(party) as rt:
        outcomes: dict[str, Any] = {}
        ids: dict[str, str] = {}
        for name in gadgets:
            obj = make_gadget.party("alice").remote(name)
            ids[name] = str(obj.id)
            try:
                await silo.get(obj, timeout=15)
                outcomes[name] = {"type": "received"}
            except Exception as exc:
                outcomes[name] = describe(exc)
        passed: dict[str, Any] = {}
        for name in values:
            try:
                got = await silo.get(make_benign.party("alice").remote(name), timeout=15)
                passed[name] = same(got, values[name]) or repr(got)[:200]
            except Exception as exc:
                passed[name] = describe(exc)
        refusals: list[str] = []
        if party == "alice":
            deadline = time.monotonic() + 10
            while len(rt.sending_failures) < len(gadgets) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            refusals = [f"{type(f).__name__}: {f}" for f in rt.sending_failures]
        report({"gadgets": outcomes, "ids": ids, "benign": passed, "refusals": refusals})


class UserPoint:
    """A class of the program (pickled by value, being in ``__main__``)."""

    def __init__(self, x: int) -> None:
        self.x = x


async def run_trusted(party: str) -> None:
    import silo

    scale = 3

    @silo.remote
    def make() -> tuple[UserPoint, Callable[[int], int]]:
        return UserPoint(4), lambda v: v * scale

    async with init(party):
        point, closure = await silo.get(make.party("alice").remote(), timeout=15)
        report({"point": [type(point).__name__, point.x], "closure": closure(5)})


def init(party: str) -> Any:
    import silo

    config: dict[str, Any] = {"timeout_in_ms": 10000}
    allow = os.environ.get("ALLOW")
    if allow:
        config["serializing_allowed_list"] = json.loads(allow)
    return silo.init(
        json.loads(os.environ["SILO_TEST_ADDRESSES"]),
        party,
        job_name="gadgets",
        config={"cross_silo_comm": config},
    )


if __name__ == "__main__":
    phase, party_name = sys.argv[1], sys.argv[2]
    if phase == "corpus":
        asyncio.run(run_corpus(party_name, Path(os.environ["MARKERS"])))
    else:
        asyncio.run(run_trusted(party_name))
