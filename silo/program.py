"""Importing a federation's program and finding its entry point, for ``silo run`` and
``silo check``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ConfigError
from .federation import Federation

__all__ = ["load_program"]


def load_program(fed: Federation) -> Callable[..., Any]:
    """Import the federation's program and return its entry point (``main`` by default).

    A file program is imported as a module named after the file, with its directory first on
    ``sys.path`` (as ``python file.py`` would, except that ``__name__`` is not ``"__main__"``).
    Raises :class:`ConfigError` when the module cannot be found or the function is missing or
    not callable; an exception raised by the program's own top-level code propagates unchanged.
    """
    spec = fed.program
    where = f"{fed.source}: program"
    module = (
        _import_file(where, spec.path)
        if spec.path is not None
        else _import_module(where, spec.module or "")
    )
    entry = getattr(module, spec.func, None)
    target = f"'{spec.path}'" if spec.path is not None else f"module {spec.module!r}"
    if entry is None:
        raise ConfigError(f"{where}: expected {target} to define a function {spec.func!r}")
    if not callable(entry):
        raise ConfigError(
            f"{where}: expected {spec.func!r} in {target} to be a function, "
            f"got {entry!r} ({type(entry).__name__})"
        )
    return entry  # type: ignore[no-any-return]


def _import_file(where: str, path: Path) -> ModuleType:
    name = path.stem
    if not name.isidentifier():
        raise ConfigError(
            f"{where}: expected a file name that is a Python identifier, got '{path.name}'"
        )
    loaded = sys.modules.get(name)
    if (
        loaded is not None
        and Path(getattr(loaded, "__file__", "") or "").resolve() != path.resolve()
    ):
        raise ConfigError(
            f"{where}: '{path.name}' would shadow the module {name!r} that is already imported; "
            f"expected another file name"
        )
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: expected a Python file, cannot load '{path}'")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise ConfigError(
            f"{where}: expected valid Python in '{path}', "
            f"got a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_module(where: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        parents = {".".join(name.split(".")[: i + 1]) for i in range(name.count(".") + 1)}
        if exc.name not in parents:
            raise
        raise ConfigError(
            f"{where}: expected an importable module, cannot import {name!r}: {exc}"
        ) from None
