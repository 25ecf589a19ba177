"""The machine a run was made on: CPU, cores, memory, kernel, Python and library versions."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other work on the machine skews timings)."""
    try:
        with open("/proc/loadavg") as loadavg:
            return " ".join(loadavg.read().split()[:3])
    except OSError:
        return "unknown"


def silo_revision() -> str:
    """The git commit of the silo package being measured, marked when silo/ has local edits."""
    import silo

    where = os.path.dirname(os.path.dirname(os.path.abspath(silo.__file__)))
    try:
        head = subprocess.run(
            ["git", "-C", where, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--", "silo"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return f"{where} (git unavailable)"
    if head.returncode != 0:
        return f"{where} (not a git checkout)"
    return head.stdout.strip() + (" + uncommitted changes in silo/" if dirty.stdout.strip() else "")


def describe() -> dict[str, str]:
    """Name -> value, in display order."""
    libs = ("aiohttp", "uvloop", "numpy", "msgpack", "cloudpickle")
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory_gib(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        **{name: _version(name) for name in libs},
        "silo": silo_revision(),
    }
