"""Executors: bob's calls and actors run in worker processes or on a real Dask cluster.

Each job is two real parties over 127.0.0.1 (``tests/programs/executors.py``); bob's
``config["executor"]`` comes from its environment. The Dask cluster is a real
``distributed.LocalCluster`` of two worker processes, started once for this module in a process
of its own (``programs/dask_cluster.py``: this process must not import ``distributed``), with
``allowed-failures`` 0 so a task that kills its worker fails at once instead of being retried.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import silo
from silo.config import ExecutorConfig, parse_config
from silo.errors import ConfigError
from silo.federation import load_federation

from multiparty import PROGRAMS, PartyRun, addresses_for, collect

PROGRAM = PROGRAMS / "executors.py"
PARTIES = ["alice", "bob"]


def run_job(scenario: str, executor: dict[str, Any], timeout: float = 60.0) -> dict[str, PartyRun]:
    addresses = addresses_for(PARTIES)
    started = time.monotonic()
    procs = {}
    try:
        for party in PARTIES:
            env = {**os.environ, "SILO_TEST_ADDRESSES": json.dumps(addresses)}
            env["PYTHONUNBUFFERED"] = "1"
            if party == "bob":
                env["EXECUTOR"] = json.dumps(executor)
            procs[party] = subprocess.Popen(
                [sys.executable, str(PROGRAM), scenario, party],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        return {p: collect(proc, p, started, timeout) for p, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Cluster:
    """The LocalCluster of ``programs/dask_cluster.py``, running in a process of its own."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PROGRAMS / "dask_cluster.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.address = self._line()
        assert self.address.startswith("tcp://"), self.address

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._line()

    def worker_pids(self) -> set[int]:
        return set(json.loads(self.ask("pids")))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A LocalCluster of 2 worker processes, shared by this module's Dask jobs."""
    local = Cluster()
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def dask_executor(cluster: Cluster) -> dict[str, Any]:
    assert cluster.ask("wait") == "ok"
    return {"kind": "dask", "address": cluster.address}


def check_work(runs: dict[str, PartyRun]) -> dict[str, Any]:
    for run in runs.values():
        assert run.returncode == 0, run
    alice, bob = runs["alice"].result, runs["bob"].result
    assert alice["placed"] == bob["placed"]
    assert [p["x"] for p in bob["placed"]] == list(range(6))
    assert alice["summed"] == bob["summed"] == 15
    assert alice["closure"] == bob["closure"] == 1005
    assert bob["counts"] == list(range(2, 42))
    assert alice["dump"]["items"] == bob["dump"]["items"] == [-1, *range(40)]
    pids = {p["pid"] for p in bob["placed"]}
    assert bob["pid"] not in pids and bob["dump"]["pid"] != bob["pid"]
    return bob  # type: ignore[no-any-return]


def check_failures(runs: dict[str, PartyRun], lost: list[str]) -> None:
    for run in runs.values():
        assert run.returncode == 0, run
        assert run.elapsed < 30, run
    alice, bob = runs["alice"].result, runs["bob"].result
    for key in ("raised", "killed", "actor_killed"):
        assert alice[key]["type"] == "FedRemoteError", alice
        assert alice[key]["src"] == "bob", alice
    assert bob["raised"] == {"type": "ValueError", "str": "bad value on a worker"}
    assert bob["killed"]["type"] == "WorkerLostError", bob
    assert bob["actor_killed"]["type"] == "WorkerLostError", bob
    for key, words in zip(("killed", "actor_killed"), lost, strict=True):
        assert words in bob[key]["str"], bob
    assert alice["after"] == bob["after"]
    assert alice["after"]["value"]["x"] == 7


# ---------------------------------------------------------------------- processes


def test_processes_run_calls_and_actors_in_worker_processes() -> None:
    bob = check_work(run_job("work", {"kind": "processes", "max_workers": 2}))
    pids = {p["pid"] for p in bob["placed"]}
    assert 1 <= len(pids) <= 2
    assert {p["ppid"] for p in bob["placed"]} == {bob["pid"]}
    assert bob["dump"]["pid"] not in pids


def test_processes_failures_reach_alice_as_fed_remote_errors() -> None:
    check_failures(
        run_job("failures", {"kind": "processes", "max_workers": 1}),
        ["running dies died (killed by SIGKILL)", "running Log.die died (killed by SIGKILL)"],
    )


# ---------------------------------------------------------------------- dask


def test_dask_runs_calls_and_actors_on_the_cluster(
    cluster: Cluster, dask_executor: dict[str, Any]
) -> None:
    bob = check_work(run_job("work", dask_executor))
    workers = cluster.worker_pids()
    assert {p["pid"] for p in bob["placed"]} <= workers
    assert bob["dump"]["pid"] in workers


def test_dask_failures_reach_alice_as_fed_remote_errors(dask_executor: dict[str, Any]) -> None:
    check_failures(
        run_job("failures", dask_executor),
        ["KilledWorker", "the worker of actor Log#"],
    )


_SCHEDULER = """
import asyncio, distributed

async def main():
    async with distributed.Scheduler(host="127.0.0.1", port=0, dashboard_address=":0") as s:
        print(s.address, flush=True)
        await asyncio.sleep(120)

asyncio.run(main())
"""


def test_dask_scheduler_gone_fails_the_call_and_shutdown_is_bounded() -> None:
    scheduler = subprocess.Popen(
        [sys.executable, "-c", _SCHEDULER], stdout=subprocess.PIPE, text=True
    )
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        assert scheduler.stdout is not None
        address = scheduler.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        addresses = addresses_for(PARTIES)
        started = time.monotonic()
        for party in PARTIES:
            env = {**os.environ, "SILO_TEST_ADDRESSES": json.dumps(addresses)}
            if party == "bob":
                env["EXECUTOR"] = json.dumps({"kind": "dask", "address": address})
            procs[party] = subprocess.Popen(
                [sys.executable, "-u", str(PROGRAM), "stranded", party],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        bob_out = procs["bob"].stdout
        assert bob_out is not None
        first = bob_out.readline()
        assert first.strip() == 'RESULT "submitted"', first
        scheduler.kill()
        runs = {p: collect(proc, p, started, 40) for p, proc in procs.items()}
    finally:
        for proc in [scheduler, *procs.values()]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if scheduler.stdout is not None:
            scheduler.stdout.close()
    for run in runs.values():
        assert run.returncode == 0, run
        assert run.elapsed < 25, run
    assert runs["alice"].result["type"] == "FedRemoteError", runs["alice"]
    assert runs["alice"].result["src"] == "bob"
    assert runs["bob"].result["type"] == "WorkerLostError", runs["bob"]
    assert "scheduler" in runs["bob"].result["str"]


def test_dask_hung_scheduler_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    scheduler = subprocess.Popen(
        [sys.executable, "-c", _SCHEDULER], stdout=subprocess.PIPE, text=True
    )
    gate = tmp_path / "stopped"
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        assert scheduler.stdout is not None
        address = scheduler.stdout.readline().strip()
        addresses = addresses_for(PARTIES)
        started = time.monotonic()
        for party in PARTIES:
            env = {**os.environ, "SILO_TEST_ADDRESSES": json.dumps(addresses)}
            if party == "bob":
                env["EXECUTOR"] = json.dumps({"kind": "dask", "address": address})
                env["GATE"] = str(gate)
            procs[party] = subprocess.Popen(
                [sys.executable, "-u", str(PROGRAM), "hung_scheduler", party],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        bob_out = procs["bob"].stdout
        assert bob_out is not None
        first = bob_out.readline()
        assert first.strip() == 'RESULT "connected"', first
        scheduler.send_signal(signal.SIGSTOP)
        gate.touch()
        stopped = time.monotonic()
        runs = {p: collect(proc, p, started, 40) for p, proc in procs.items()}
        ended = time.monotonic() - stopped
    finally:
        for proc in [scheduler, *procs.values()]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if scheduler.stdout is not None:
            scheduler.stdout.close()
    for run in runs.values():
        assert run.returncode == 0, run
    assert runs["bob"].results == [3, "closed"], runs["bob"]
    assert ended < 15, f"bob took {ended:.1f} s to close its client to a hung scheduler"


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ExecutorConfig()),
        ({"kind": "threads", "max_workers": 3}, ExecutorConfig("threads", 3)),
        ({"kind": "processes"}, ExecutorConfig("processes")),
        (
            {"kind": "dask", "address": "tcp://10.0.0.1:8786"},
            ExecutorConfig("dask", address="tcp://10.0.0.1:8786"),
        ),
        (
            {"kind": "dask", "address": "local", "n_workers": 3},
            ExecutorConfig("dask", address="local", n_workers=3),
        ),
    ],
)
def test_executor_config_is_parsed(raw: Any, expected: ExecutorConfig) -> None:
    config = parse_config({} if raw is None else {"executor": raw})
    assert config.executor == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"kind": "gpu"},
            "config['executor']['kind']: expected one of threads, processes, dask, got 'gpu'",
        ),
        ("threads", "config['executor']: expected a mapping, got 'threads'"),
        ({"kind": "dask"}, "config['executor']['address']: required for kind 'dask'"),
        ({"kind": "dask", "address": 8786}, "config['executor']['address']: expected"),
        (
            {"kind": "processes", "max_workers": 0},
            "config['executor']['max_workers']: expected an integer >= 1, got 0",
        ),
        (
            {"kind": "threads", "max_workers": True},
            "config['executor']['max_workers']: expected an integer >= 1, got True",
        ),
        ({"kind": "threads", "address": "x"}, "config['executor']: unknown key 'address'"),
        (
            {"kind": "dask", "address": "tcp://h:1", "n_workers": 2},
            "config['executor']['n_workers']: only for address 'local'",
        ),
    ],
)
def test_bad_executor_config_names_the_value(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"executor": raw})
    assert message in str(info.value)


def test_dask_without_distributed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = silo.config.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "distributed" else real(name, *args)

    monkeypatch.setattr(silo.config.importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"pip install silo\[dask\]"):
        parse_config({"executor": {"kind": "dask", "address": "tcp://h:1"}})


def test_federation_file_takes_an_executor_per_party(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("async def main(party):\n    pass\n")
    spec = {
        "job_name": "j",
        "program": "prog.py",
        "executor": {"kind": "processes", "max_workers": 2},
        "parties": {
            "alice": {"address": "127.0.0.1:1"},
            "bob": {"address": "127.0.0.1:2", "executor": {"kind": "threads"}},
        },
    }
    path = tmp_path / "fed.yaml"
    path.write_text(yaml.safe_dump(spec))
    fed = load_federation(path)
    assert fed.config_for("alice").executor == ExecutorConfig("processes", 2)
    assert fed.config_for("bob").executor == ExecutorConfig("threads")
    spec["parties"]["bob"]["executor"] = {"kind": "gpu"}  # type: ignore[index]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as info:
        load_federation(path)
    assert "parties.bob.executor.kind: expected one of threads, processes, dask" in str(info.value)


def test_import_silo_does_not_import_dask() -> None:
    code = "import sys, silo, silo.executors; print({'dask', 'distributed'} & set(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "set()"
