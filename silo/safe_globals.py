"""Which globals a received pickle may name: the built-in safe set and the names never admitted.

A pickle can call any global it can name, so naming is the whole attack surface. The built-in
safe set (:data:`SAFE_GLOBALS`) holds only types and reconstructors of plain data, each found by
pickling such a value under protocol 5 with out-of-band buffers (numpy 1.24 to 2.x, whose
reconstructors moved from ``numpy.core`` to ``numpy._core``). ``copyreg`` is not in it: no safe
type needs it under protocol 5 (objects are rebuilt with the ``NEWOBJ`` opcode instead).

A ``serializing_allowed_list`` entry adds to that set. :func:`dangerous` says which names a
module wildcard (``"*"``) never admits: those are admitted only when the list names them one by
one, the user's deliberate choice. :func:`dangerous_object` applies the same rule to what a name
resolves to, so a module that merely re-exports ``os.system`` does not smuggle it in.
"""

from __future__ import annotations

import types

__all__ = [
    "DANGEROUS_ANYWHERE",
    "DANGEROUS_MODULES",
    "DANGEROUS_NAMES",
    "SAFE_GLOBALS",
    "dangerous",
    "dangerous_object",
    "names_it",
]

#: ``{module: names}`` every receiver admits. Nothing in it can reach code beyond building data.
SAFE_GLOBALS: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "bool",
            "bytearray",
            "bytes",
            "complex",
            "dict",
            "float",
            "frozenset",
            "int",
            "list",
            "range",
            "set",
            "slice",
            "str",
            "tuple",
            "Ellipsis",
            "NotImplemented",
        }
    ),
    "collections": frozenset({"OrderedDict", "deque", "defaultdict", "Counter"}),
    "datetime": frozenset({"date", "time", "datetime", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "uuid": frozenset({"UUID"}),
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "silo.errors": frozenset(
        {
            "ActorKilledError",
            "AddressInUseError",
            "ConfigError",
            "DivergenceError",
            "FedRemoteError",
            "GetTimeoutError",
            "NoRuntimeError",
            "PeerUnavailableError",
            "ProtocolError",
            "RemoteCause",
            "RuntimeClosedError",
            "SerializationError",
            "SiloError",
            "TransportError",
            "WorkerLostError",
        }
    ),
}

#: Modules (and their submodules) a wildcard never opens: each can run commands, load code,
#: touch files or sockets, or rebuild functions from bytes.
DANGEROUS_MODULES = frozenset(
    {
        "_io",
        "_pickle",
        "_posixsubprocess",
        "asyncio",
        "cloudpickle",
        "code",
        "codeop",
        "copyreg",
        "ctypes",
        "dill",
        "importlib",
        "io",
        "marshal",
        "multiprocessing",
        "nt",
        "numpy._pytesttester",
        "numpy.ctypeslib",
        "numpy.distutils",
        "numpy.f2py",
        "numpy.lib._datasource",
        "numpy.lib._npyio_impl",
        "numpy.lib.format",
        "numpy.lib.npyio",
        "numpy.testing",
        "os",
        "pathlib",
        "pickle",
        "posix",
        "pty",
        "runpy",
        "shutil",
        "socket",
        "subprocess",
        "sys",
        "tempfile",
        "threading",
        "types",
        "webbrowser",
        "zipimport",
    }
)

#: Names a wildcard on an otherwise harmless module never admits.
DANGEROUS_NAMES: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "__build_class__",
            "__import__",
            "__loader__",
            "breakpoint",
            "classmethod",
            "compile",
            "delattr",
            "eval",
            "exec",
            "exit",
            "getattr",
            "globals",
            "hasattr",
            "help",
            "input",
            "locals",
            "memoryview",
            "open",
            "print",
            "property",
            "quit",
            "setattr",
            "staticmethod",
            "super",
            "type",
            "vars",
        }
    ),
    "functools": frozenset({"partial", "partialmethod", "reduce", "singledispatch", "wraps"}),
    "operator": frozenset({"attrgetter", "itemgetter", "methodcaller", "call"}),
    "_operator": frozenset({"attrgetter", "itemgetter", "methodcaller", "call"}),
    "_functools": frozenset({"partial", "reduce"}),
}


#: Names that read or write files, unpickle, or run code, in whatever module a wildcard opens:
#: with ``{"numpy": "*"}``, ``numpy.savetxt`` could write a pickle to a file and ``numpy.load``
#: (``allow_pickle``) run it.
DANGEROUS_ANYWHERE = frozenset(
    {
        "DataSource",
        "delattr",
        "dump",
        "dumps",
        "eval",
        "exec",
        "fromfile",
        "fromregex",
        "fromtextfile",
        "genfromtxt",
        "getattr",
        "import_module",
        "load",
        "loads",
        "loadtxt",
        "memmap",
        "open",
        "open_memmap",
        "popen",
        "read_pickle",
        "save",
        "savetxt",
        "savez",
        "savez_compressed",
        "setattr",
        "system",
        "to_pickle",
        "tofile",
    }
)


def _named_dangerous(module: str, name: str) -> bool:
    return name in DANGEROUS_ANYWHERE or name in DANGEROUS_NAMES.get(module, ())


def _in_dangerous_module(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:end]) in DANGEROUS_MODULES for end in range(1, len(parts) + 1))


def dangerous(module: str, name: str) -> bool:
    """Whether ``module.name`` is one a wildcard never admits.

    That is: anything in a module of :data:`DANGEROUS_MODULES` (or below it), a name of
    :data:`DANGEROUS_NAMES` or :data:`DANGEROUS_ANYWHERE`, a dunder name, and a dotted name
    (``a.b``), which walks attributes and could reach anything the module imports.
    """
    return (
        _in_dangerous_module(module)
        or _named_dangerous(module, name)
        or name.startswith("__")
        or "." in name
    )


def dangerous_object(obj: object) -> str | None:
    """The dangerous ``module.name`` that ``obj`` really is, or ``None``.

    Catches a module object (useless as a value, a lever for monkeypatching with ``BUILD``) and a
    function or class whose home is dangerous, whatever module re-exported it.
    """
    if isinstance(obj, types.ModuleType):
        return f"module {obj.__name__}"
    home = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(home, str) or not isinstance(name, str):
        return None
    if _in_dangerous_module(home) or _named_dangerous(home, name):
        return f"{home}.{name}"
    return None


def names_it(module: str, name: str, real: str) -> bool:
    """Whether an allow-list entry ``module: [name]`` names the dangerous ``real`` knowingly.

    True when it is ``real`` itself, or a name of the dangerous catalogue (``os.system`` for
    ``posix.system``); a harmless-looking module that re-exports ``real`` does not name it.
    """
    return (
        real == f"{module}.{name}"
        or _in_dangerous_module(module)
        or name in DANGEROUS_NAMES.get(module, ())
    )
