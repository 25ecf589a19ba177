"""No wait without a deadline: frozen, killed, late, absent, refusing peers; broken links.

Every party is a separate OS process on 127.0.0.1 (tests/programs/liveness.py), with
``timeout_in_ms`` 2000 and ``heartbeat_interval_ms`` 200 unless a test says otherwise. Links are
broken through tests/faultproxy.py where a test needs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import silo
from silo.errors import PeerUnavailableError
from silo.transport.base import DATA_PATH, WS_PATH
from silo.wire import ErrorInfo, Kind, decode_frame, encode_control

from _cli_support import make_tls_files, write_federation
from faultproxy import FaultProxy
from multiparty import PartyRun, addresses_for, collect, free_ports

PROGRAM = Path(__file__).parent / "programs" / "liveness.py"
TIMEOUT_S = 2.0
HEARTBEAT_S = 0.2
#: Scheduling slack on a loaded 2-core machine.
MARGIN_S = 1.5


def start(
    scenario: str, party: str, addresses: dict[str, str], **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(PROGRAM), scenario, party],
        stdin=subprocess.PIPE if env.get("WAIT_GO") == "1" else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "SILO_TEST_ADDRESSES": json.dumps(addresses),
            "PYTHONUNBUFFERED": "1",
            **env,
        },
    )


def run(
    scenario: str,
    addresses: dict[str, dict[str, str]],
    *,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
    party_env: dict[str, dict[str, str]] | None = None,
    delays: dict[str, float] | None = None,
) -> dict[str, PartyRun]:
    """Run ``scenario``, each party with its own view of the addresses (``addresses[party]``).

    Without ``delays`` the parties start together (see :func:`start_together`).
    """
    started = time.monotonic()
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        if delays is None:
            procs = start_together(scenario, addresses, party_env, **(env or {}))
        for party in sorted(addresses, key=lambda p: (delays or {}).get(p, 0.0)):
            if party in procs:
                continue
            wait = started + (delays or {}).get(party, 0.0) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            extra = {**(env or {}), **(party_env or {}).get(party, {})}
            procs[party] = start(scenario, party, addresses[party], **extra)
        return {p: collect(proc, p, started, timeout) for p, proc in procs.items()}
    finally:
        stop_all(procs)


def same_view(parties: list[str]) -> dict[str, dict[str, str]]:
    addresses = addresses_for(parties)
    return {p: addresses for p in parties}


def stop_all(procs: dict[str, subprocess.Popen[str]]) -> None:
    """Kill what still runs and close every pipe (a stopped process is killed too)."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def wait_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if line.strip() == text:
            return
    proc.wait()
    raise AssertionError(f"the process ended before printing {text!r}:\n{proc.stderr.read()}")


def start_together(
    scenario: str,
    views: dict[str, dict[str, str]],
    party_env: dict[str, dict[str, str]] | None = None,
    **env: str,
) -> dict[str, subprocess.Popen[str]]:
    """Start one process per party and let them call ``init`` only once all have imported."""
    procs = {
        p: start(scenario, p, views[p], **{**env, "WAIT_GO": "1", **(party_env or {}).get(p, {})})
        for p in views
    }
    try:
        for proc in procs.values():
            wait_line(proc, "IMPORTED")
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write("GO\n")
            proc.stdin.flush()
    except BaseException:
        stop_all(procs)
        raise
    return procs


# ---------------------------------------------------------------------- a peer that goes away


@pytest.mark.parametrize("sig", [signal.SIGSTOP, signal.SIGKILL])
def test_a_frozen_or_killed_peer_fails_every_party_in_bound(sig: signal.Signals) -> None:
    parties = ["alice", "bob", "carol"]
    addresses = addresses_for(parties)
    started = time.monotonic()
    procs = start_together("frozen", {p: addresses for p in parties})
    try:
        wait_line(procs["carol"], "READY")
        for p in ("alice", "bob"):
            wait_line(procs[p], "WAITING")
        stopped_at = time.time()
        procs["carol"].send_signal(sig)
        runs = {p: collect(procs[p], p, started, 30) for p in ("alice", "bob")}
    finally:
        stop_all(procs)
    for party, party_run in runs.items():
        err = party_run.result
        assert err["type"] == "PeerUnavailableError", str(party_run)
        assert err["src"] == "carol" and "carol" in err["str"]
        after = err["at"] - stopped_at
        assert TIMEOUT_S - HEARTBEAT_S - 0.1 <= after <= TIMEOUT_S + HEARTBEAT_S + MARGIN_S, (
            party,
            after,
        )
        assert party_run.returncode == 1, str(party_run)


def test_a_late_peer_within_the_timeout_is_fine() -> None:
    runs = run(
        "late", same_view(["alice", "bob"]), env={"TIMEOUT_MS": "12000"}, delays={"bob": 4.0}
    )
    for party_run in runs.values():
        assert party_run.returncode == 0 and party_run.result == 5, str(party_run)


def test_a_peer_that_never_starts_fails_the_wait_in_bound_after_a_push() -> None:
    addresses = addresses_for(["alice", "bob"])
    runs = run("lonely", {"alice": addresses})
    alice = runs["alice"]
    err = alice.result
    assert err["type"] == "PeerUnavailableError" and err["src"] == "bob", str(alice)
    assert "bob did not answer within 2000 ms" in err["str"]
    assert TIMEOUT_S - 0.1 <= err["waited"] <= TIMEOUT_S + HEARTBEAT_S + MARGIN_S
    assert any("could not send object" in f for f in err["failures"])
    assert alice.returncode == 1


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("party_env", "names"),
    [
        ({"alice": {"JOB": "job-a"}, "bob": {"JOB": "job-b"}}, ["'job-a'", "'job-b'"]),
        ({"bob": {"PROTOCOL": "2"}}, ["protocol 1", "protocol 2"]),
    ],
    ids=["job", "protocol"],
)
def test_a_refused_channel_fails_both_parties_fast(
    party_env: dict[str, dict[str, str]], names: list[str]
) -> None:
    runs = run(
        "mismatch", same_view(["alice", "bob"]), env={"TIMEOUT_MS": "20000"}, party_env=party_env
    )
    for party_run in runs.values():
        err = party_run.result
        assert err["type"] == "PeerUnavailableError", str(party_run)
        assert "refused the channel" in err["str"]
        for name in names:
            assert name in err["str"], (name, str(party_run))
        assert err["waited"] < 8, str(party_run)
        assert party_run.returncode == 1, str(party_run)


@pytest.mark.parametrize("name", ["", "job ", "job\r\n", "a/b", "jöb", "x" * 129, 7, "tab\tjob"])
async def test_bad_job_names_are_a_config_error_naming_the_value(name: object) -> None:
    addresses = addresses_for(["alice", "bob"])
    with pytest.raises(silo.ConfigError, match="job_name") as info:
        await silo.init(addresses, "alice", job_name=name)  # type: ignore[arg-type]
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", ["a", "job-1.2_x", "x" * 128])
def test_good_job_names_pass(name: str) -> None:
    assert silo.config.check_job_name(name) == name


def test_the_federation_file_checks_the_job_name_the_same_way(tmp_path: Path) -> None:
    from silo.federation import load_federation

    path = write_federation(tmp_path, PROGRAM, ["alice", "bob"])
    path.write_text(path.read_text().replace("job_name: test", "job_name: 'test '"))
    with pytest.raises(silo.ConfigError, match=r"job_name: .*'test '"):
        load_federation(path)


# ---------------------------------------------------------------------- broken links


def proxied(parties: list[str]) -> tuple[FaultProxy, dict[str, dict[str, str]]]:
    """Each party reaches every peer through its own proxy route ``"a->b"``."""
    real = addresses_for(parties)
    proxy = FaultProxy({f"{a}->{b}": real[b] for a in parties for b in parties if a != b})
    views = {
        a: {b: real[b] if a == b else proxy.address(f"{a}->{b}") for b in parties} for a in parties
    }
    return proxy, views


def test_resets_and_a_short_refusal_mid_job_are_retried_and_delivered_once() -> None:
    proxy, views = proxied(["alice", "bob"])
    with proxy:
        started = time.monotonic()
        procs = start_together("chatter", views, TIMEOUT_MS="3000")
        try:
            wait_line(procs["alice"], "STARTED")
            time.sleep(0.5)
            proxy.reset()
            time.sleep(0.4)
            proxy.reset()
            time.sleep(0.4)
            proxy.refuse(0.5)
            runs = {p: collect(proc, p, started, 60) for p, proc in procs.items()}
        finally:
            stop_all(procs)
        resets = sum(proxy.stats(r).resets for r in proxy.routes)
    assert resets >= 4
    expected = sum(i + 1 + 1000 for i in range(200))
    for party_run in runs.values():
        assert party_run.returncode == 0, str(party_run)
        assert party_run.result["total"] == expected
        assert party_run.result["duplicates"] == 0
    assert sum(run.result["reconnects"] for run in runs.values()) >= 2, runs


def test_a_blackholed_link_fails_both_parties_in_bound() -> None:
    proxy, views = proxied(["alice", "bob", "carol"])
    with proxy:
        started = time.monotonic()
        procs = start_together("frozen", views)
        try:
            wait_line(procs["carol"], "READY")
            for p in ("alice", "bob"):
                wait_line(procs[p], "WAITING")
            cut_at = time.time()
            proxy.blackhole("alice->carol", "carol->alice", "bob->carol", "carol->bob")
            runs = {p: collect(procs[p], p, started, 30) for p in ("alice", "bob")}
        finally:
            stop_all(procs)
    for party, party_run in runs.items():
        err = party_run.result
        assert err["type"] == "PeerUnavailableError" and err["src"] == "carol", str(party_run)
        assert err["at"] - cut_at <= TIMEOUT_S + HEARTBEAT_S + MARGIN_S, party
        assert party_run.returncode == 1


def test_a_large_frame_on_a_slow_working_link_is_not_failed() -> None:
    """24 MiB at 4 MiB/s takes about 6 s, three times ``timeout_in_ms``: bytes keep moving."""
    proxy, views = proxied(["alice", "bob"])
    with proxy:
        proxy.throttle(4 * 1024 * 1024, "alice->bob")
        runs = run("bulk", views, env={"MIB": "24"}, timeout=90)
    for party_run in runs.values():
        assert party_run.returncode == 0, str(party_run)
        assert party_run.result["same"] is True
    assert runs["bob"].result["elapsed"] > 3 * TIMEOUT_S


# ---------------------------------------------------------------------- clean goodbye


def test_one_party_finishing_early_under_tls_aborts_nobody(tmp_path: Path) -> None:
    parties = ["alice", "bob", "carol"]
    make_tls_files(tmp_path, parties)
    for attempt in range(6):
        runs = run("early", same_view(parties), env={"TLS_DIR": str(tmp_path)}, timeout=60)
        for party_run in runs.values():
            assert party_run.returncode == 0, (attempt, str(party_run))
            assert "abort" not in party_run.stderr.lower(), (attempt, str(party_run))
        assert runs["carol"].result == [5]
        assert runs["alice"].result == runs["bob"].result == [5, *(i + 2 for i in range(8))]


# ---------------------------------------------------------------------- frames


def test_a_lost_peer_crosses_an_abort_as_itself() -> None:
    lost = PeerUnavailableError("carol", "carol was not heard from for 2000 ms")
    info = ErrorInfo.from_exception(lost, party="bob", expose=False)
    frame = encode_control(Kind.ABORT, "job", "bob", 4, extra=info.to_wire())
    header, _ = decode_frame(frame.join())
    rebuilt = header.error_info().to_exception()
    assert isinstance(rebuilt, PeerUnavailableError)
    assert rebuilt.src_party == "carol" and rebuilt.reason == lost.reason


def test_heartbeats_and_goodbyes_round_trip() -> None:
    for kind, extra in ((Kind.HEARTBEAT, None), (Kind.HEARTBEAT, {"running": "train"})):
        header, _ = decode_frame(encode_control(kind, "job", "bob", extra=extra).join())
        assert header.kind is kind and header.extra == extra
    header, _ = decode_frame(encode_control(Kind.GOODBYE, "job", "bob", 9).join())
    assert header.kind is Kind.GOODBYE and header.msg_id == 9


# ---------------------------------------------------------------------- deadlines, in-process


class HalfDeafPeer:
    """A fake peer that stays alive (heartbeats both ways) but swallows frames.

    Its listener answers heartbeats with heartbeats and never acknowledges a websocket frame;
    a large DATA request's body is read for ``read_first`` bytes and then no more.
    """

    def __init__(self, port: int, target: str, job: str) -> None:
        self.address = f"127.0.0.1:{port}"
        self._port = port
        self._target = target
        self._job = job
        self.frames: list[Kind] = []
        self.body_started = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HalfDeafPeer:
        app = web.Application()
        app.router.add_get(WS_PATH, self._ws)
        app.router.add_post(DATA_PATH, self._data)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port).start()
        self._session = aiohttp.ClientSession(
            headers={"X-Silo-Job": self._job, "X-Silo-Party": "deaf", "X-Silo-Protocol": "1"}
        )
        task = asyncio.ensure_future(self._dial())
        self._tasks.add(task)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()
        await self._runner.cleanup()

    def _beat(self) -> bytes:
        return encode_control(Kind.HEARTBEAT, self._job, "deaf").join()

    async def _beats(self, send: Any) -> None:
        while True:
            await send(self._beat())
            await asyncio.sleep(0.05)

    async def _dial(self) -> None:
        while True:
            try:
                ws = await self._session.ws_connect(f"http://{self._target}{WS_PATH}")
            except aiohttp.ClientError:
                await asyncio.sleep(0.02)
                continue
            beats = asyncio.ensure_future(self._beats(ws.send_bytes))
            try:
                async for _ in ws:
                    pass
            finally:
                beats.cancel()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        beats = asyncio.ensure_future(self._beats(ws.send_bytes))
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    self.frames.append(decode_frame(msg.data)[0].kind)
        finally:
            beats.cancel()
        return ws

    async def _data(self, request: web.Request) -> web.Response:
        await request.content.readexactly(1 << 20)
        self.body_started.set()
        await asyncio.sleep(3600)
        return web.Response()


@silo.remote
def blob(n: int) -> bytes:
    return b"x" * n


async def _one_failure(size: int, comm: dict[str, Any]) -> tuple[silo.SendingFailure, float]:
    alice_port, deaf_port = free_ports(2)
    failures: list[silo.SendingFailure] = []
    failed = asyncio.Event()

    def handler(failure: silo.SendingFailure) -> None:
        failures.append(failure)
        failed.set()

    addresses = {"a": f"127.0.0.1:{alice_port}", "deaf": f"127.0.0.1:{deaf_port}"}
    async with HalfDeafPeer(deaf_port, addresses["a"], "silo"):
        started = time.monotonic()
        async with silo.init(
            addresses,
            "a",
            config={"cross_silo_comm": {"heartbeat_interval_ms": 100, **comm}},
            sending_failure_handler=handler,
        ):
            blob.party("deaf").remote(blob.party("a").remote(size))
            await asyncio.wait_for(failed.wait(), 20)
            elapsed = time.monotonic() - started
    return failures[0], elapsed


async def test_a_body_that_stops_moving_fails_after_timeout_in_ms_of_no_progress() -> None:
    failure, elapsed = await _one_failure(48 << 20, {"timeout_in_ms": 800})
    assert "no progress for 800 ms" in str(failure) and failure.object_id == (1, 0)
    assert 0.8 <= elapsed < 0.8 + 3.0


async def test_a_frame_never_acknowledged_is_rewritten_then_fails() -> None:
    failure, elapsed = await _one_failure(
        100, {"timeout_in_ms": 500, "retry_policy": {"max_attempts": 2}}
    )
    assert "not acknowledged after 2 attempts" in str(failure)
    assert 1.0 <= elapsed < 1.0 + 3.0


@pytest.mark.parametrize("value", [0, -5, "200", 1.5, True])
def test_heartbeat_interval_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(silo.ConfigError, match=r"heartbeat_interval_ms.*integer >= 1"):
        silo.config.parse_config({"cross_silo_comm": {"heartbeat_interval_ms": value}})


def test_heartbeat_interval_defaults_to_one_second() -> None:
    comm = silo.config.parse_config({}).cross_silo_comm
    assert comm.heartbeat_interval_ms == 1000 and comm.heartbeat_s == 1.0
    custom = silo.config.parse_config({"cross_silo_comm": {"heartbeat_interval_ms": 250}})
    assert custom.cross_silo_comm.heartbeat_s == 0.25


async def test_a_peer_that_does_not_accept_our_identity_fails_our_gets_fast() -> None:
    a, b, c = (f"127.0.0.1:{port}" for port in free_ports(3))
    config = {"cross_silo_comm": {"timeout_in_ms": 4000, "heartbeat_interval_ms": 100}}

    async def alice() -> tuple[float, str]:
        started = time.monotonic()
        with pytest.raises(PeerUnavailableError) as info:
            async with silo.init({"alice": a, "bob": b}, "alice", job_name="j", config=config):
                await silo.get(blob.party("bob").remote(1))
        return time.monotonic() - started, str(info.value)

    async def bob() -> None:
        async with silo.init({"bob": b, "carol": c}, "bob", job_name="j", config=config):
            await asyncio.sleep(2.5)

    (elapsed, message), _ = await asyncio.gather(alice(), bob())
    assert "bob refused the channel of alice" in message
    assert "'alice' is not a peer of job 'j'" in message
    assert elapsed < 4.0
