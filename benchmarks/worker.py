"""Child-process entry: ``python -m benchmarks.worker MODULE FUNC JSON_KWARGS``.

Imports ``benchmarks.MODULE``, calls ``FUNC(**kwargs)``; a coroutine is run on uvloop or on
asyncio's loop as ``kwargs["uvloop"]`` says. The returned dict is printed on stdout as one
``BENCH {json}`` line, which the parent reads. With ``BENCH_PROFILE`` set to a path prefix, the
call runs under cProfile (main thread only) and the stats go to ``PREFIX-ROLE.pstats``.
"""

from __future__ import annotations

import time

T_PROCESS_MAIN = time.monotonic_ns()

import cProfile  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

RESULT_PREFIX = "BENCH "


def _call(func: Any, kwargs: dict[str, Any]) -> Any:
    result = func(**kwargs)
    if inspect.iscoroutine(result):
        from silo.loop import run

        result = run(result, use_uvloop=bool(kwargs.get("uvloop", True)))
    return result


def main(argv: list[str]) -> int:
    module_name, func_name, raw = argv
    kwargs: dict[str, Any] = json.loads(raw)
    module = importlib.import_module(f"benchmarks.{module_name}")
    func = getattr(module, func_name)
    prefix = os.environ.get("BENCH_PROFILE")
    if prefix:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            result = _call(func, kwargs)
        finally:
            profiler.disable()
            role = kwargs.get("party", func_name)
            profiler.dump_stats(f"{prefix}-{role}.pstats")
    else:
        result = _call(func, kwargs)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
