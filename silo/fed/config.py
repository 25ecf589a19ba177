"""RayFed's ``fed.config``: what ``fed.init`` was given, for library code that asks.

``get_cluster_config()`` and ``get_job_config()`` read the running session; without one they
raise :class:`~silo.NoRuntimeError`. The ``job_name`` argument RayFed's versions take is
accepted and, since a process runs one job, only checked against the running one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import NoRuntimeError
from ._session import Session, active

__all__ = ["ClusterConfig", "JobConfig", "get_cluster_config", "get_job_config"]


@dataclass(frozen=True)
class ClusterConfig:
    """Where the parties are: ``cluster_addresses`` (as given to ``fed.init``),
    ``current_party`` and ``tls_config`` (``{}`` without TLS, as in RayFed)."""

    cluster_addresses: Mapping[str, str]
    current_party: str
    tls_config: Mapping[str, Any]


@dataclass(frozen=True)
class JobConfig:
    """The job: its name, the ``cross_silo_comm`` mapping as given (RayFed's
    ``cross_silo_comm_config_dict``) and ``config``, the silo configuration it became."""

    job_name: str
    cross_silo_comm_config_dict: Mapping[str, Any]
    config: Config


def _session(job_name: str | None) -> Session:
    session = active()
    if session is None or session.runtime is None:
        raise NoRuntimeError("silo.fed: no job is running: call fed.init(...) first")
    if job_name is not None and job_name != session.runtime.job:
        raise NoRuntimeError(
            f"silo.fed: no job {job_name!r} here; this process runs job {session.runtime.job!r}"
        )
    return session


def get_cluster_config(job_name: str | None = None) -> ClusterConfig:
    """The addresses, this party and the TLS configuration of the running job."""
    session = _session(job_name)
    runtime = session.runtime
    assert runtime is not None
    return ClusterConfig(
        cluster_addresses=dict(session.addresses),
        current_party=runtime.party,
        tls_config=dict(session.tls_config or {}),
    )


def get_job_config(job_name: str | None = None) -> JobConfig:
    """The running job's name and configuration."""
    session = _session(job_name)
    runtime = session.runtime
    assert runtime is not None
    comm = session.rayfed_config.get("cross_silo_comm") or {}
    return JobConfig(
        job_name=runtime.job,
        cross_silo_comm_config_dict=dict(comm),
        config=runtime.config,
    )
