"""Heartbeats carry each party's activity; a slow ``silo.get`` says what it waits for."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import pytest
from test_stats import _run

from silo.activity import (
    MAX_ENTRIES,
    MAX_NAME,
    Activity,
    activity_map,
    describe,
    note_activity,
    parse_activity,
)
from silo.config import Config, parse_config
from silo.errors import ConfigError
from silo.federation import load_federation
from silo.peers import Peers
from silo.stats import Counters
from silo.wire import Kind, decode_frame, encode_control

from _cli_support import write_federation


def test_activity_map_names_the_longest_running_call_and_round_trips_the_wire() -> None:
    now = [50.0]
    counters = Counters(["bob"], clock=lambda: now[0])
    assert activity_map(counters) == {"running": 0, "inflight": 0}
    counters.call_started("train", 12)
    now[0] += 1.0
    counters.call_started("eval", 13)
    counters.bytes_in_flight = 300
    now[0] += 28.5
    extra = activity_map(counters)
    assert extra == {"running": 2, "inflight": 300, "call": "train", "seq": 12, "for_ms": 29500}
    header, _ = decode_frame(encode_control(Kind.HEARTBEAT, "job", "alice", extra=extra).join())
    assert parse_activity(header.extra) == Activity(2, 300, "train", 12, 29.5)
    counters.call_started("x" * 1000, 14)
    assert len(activity_map(counters)["call"]) <= MAX_NAME


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ([1, 2], "not a map"),
        ({"running": 0, "inflight": 0, **{f"k{i}": i for i in range(MAX_ENTRIES)}}, "entries"),
        ({"running": -1, "inflight": 0}, "'running'"),
        ({"running": True, "inflight": 0}, "'running'"),
        ({"running": 0, "inflight": "lots"}, "'inflight'"),
        ({"running": 0, "inflight": 0, "seq": 1 << 70}, "'seq'"),
        ({"running": 0, "inflight": 0, "for_ms": 1.5}, "'for_ms'"),
        ({"running": 1}, "lacks"),
        ({"running": 1, "inflight": 0, "call": ""}, "'call'"),
        ({"running": 1, "inflight": 0, "call": 7}, "'call'"),
        ({"running": 1, "inflight": 0, "call": "x" * (MAX_NAME + 1)}, "'call'"),
    ],
)
def test_malformed_activity_is_refused_with_a_reason(extra: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_activity(extra)


def test_unknown_keys_are_ignored_and_nil_is_no_activity() -> None:
    assert parse_activity(None) is None
    parsed = parse_activity({"running": 0, "inflight": 5, "gpu": "busy"})
    assert parsed == Activity(0, 5)


def test_a_malformed_report_is_logged_at_debug_and_never_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [10.0]
    peers = Peers(["bob"], timeout_s=5.0, clock=lambda: now[0])
    log = logging.getLogger("silo.test")
    with caplog.at_level(logging.DEBUG, logger="silo.test"):
        note_activity(peers, "bob", {"running": "many"}, log)
    assert peers.record("bob").activity is None
    assert "ignored the activity reported by bob" in caplog.text
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    note_activity(peers, "bob", {"running": 1, "inflight": 0, "call": "f", "seq": 3}, log)
    note_activity(peers, "mallory", {"running": 1, "inflight": 0}, log)
    record = peers.record("bob")
    assert record.activity == Activity(1, 0, "f", 3) and record.reported_at == 10.0


def test_describe_words_a_report() -> None:
    busy = Activity(1, 0, "train", 12, 28.6)
    assert describe("bob", busy, 0.4) == (
        "bob reports: running train (call 12) for 29 s, 0 bytes in flight"
    )
    assert describe("bob", Activity(3, 10, "Counter.inc", 0, 1.0), 0.0) == (
        "bob reports: running Counter.inc for 1.0 s and 2 more call(s), 10 bytes in flight"
    )
    assert describe("bob", Activity(0, 0), 2.5) == (
        "bob has reported nothing for 2.5 s; it last reported: running no call, 0 bytes in flight"
    )
    assert describe("bob", None, None) == "bob has reported nothing yet"


@pytest.mark.parametrize("bad", [0, -1, True, "30", math.inf, math.nan, None])
def test_slow_get_warning_s_is_validated(bad: object) -> None:
    with pytest.raises(ConfigError, match=re.escape("config['slow_get_warning_s']")):
        parse_config({"slow_get_warning_s": bad})


def test_slow_get_warning_s_default_and_yaml(tmp_path: Path) -> None:
    assert Config().slow_get_warning_s == parse_config({}).slow_get_warning_s == 30.0
    assert parse_config({"slow_get_warning_s": 2}).slow_get_warning_s == 2.0
    (tmp_path / "p.py").write_text("async def main():\n    pass\n")
    fed = load_federation(
        write_federation(tmp_path, tmp_path / "p.py", ["alice", "bob"], slow_get_warning_s=0.5)
    )
    assert fed.config.slow_get_warning_s == 0.5
    bad = write_federation(tmp_path, "p.py", ["alice"], name="bad.yaml", slow_get_warning_s=0)
    with pytest.raises(ConfigError, match="slow_get_warning_s"):
        load_federation(bad)


_WARNING = re.compile(
    r"WARNING silo: \[alice@observe\] waiting (?P<waited>[\d.]+) s for object \(1, 0\) from "
    r"bob; bob reports: running slow \(call 1\) for (?P<running>[\d.]+) s, 0 bytes in flight$"
)


def test_a_slow_get_says_what_the_peer_is_doing_once_per_interval(tmp_path: Path) -> None:
    interval, slow = 0.5, 2.2
    out = _run("slow_get", tmp_path, {"WARN_S": str(interval), "SLOW_S": str(slow)})
    lines = out["alice"]["stderr"].splitlines()
    matches = [m for line in lines if (m := _WARNING.search(line))]
    assert matches, out["alice"]["stderr"]
    waited = out["alice"]["result"]["waited"]
    expected = math.floor(waited / interval)
    assert expected - 1 <= len(matches) <= expected, (waited, out["alice"]["stderr"])
    times = [float(m["waited"]) for m in matches]
    assert times == sorted(times) and len(set(times)) == len(times)
    for i, t in enumerate(times, start=1):
        assert i * interval - 0.01 <= t < i * interval + 1.0
    # bob's report is at most a few heartbeats old: its call has run about as long as we waited
    for m in matches:
        assert abs(float(m["running"]) - float(m["waited"])) < 1.0, m.string
    warnings = [line for line in lines if "waiting" in line and "WARNING" in line]
    assert len(warnings) == len(matches), warnings


HEADERS = {"X-Silo-Job": "job", "X-Silo-Party": "alice", "X-Silo-Protocol": "1"}


async def test_heartbeats_over_a_live_channel_report_and_malformed_ones_are_ignored() -> None:
    import aiohttp

    import silo
    from silo.transport.base import WS_PATH
    from silo.wire import encode_data

    from multiparty import addresses_for

    addresses = addresses_for(["alice", "bob"])
    config = {"cross_silo_comm": {"heartbeat_interval_ms": 50}}
    rt = await silo.init(addresses, "bob", job_name="job", config=config)
    try:
        async with aiohttp.ClientSession(headers=HEADERS) as session:
            ws = await session.ws_connect(f"http://{addresses['bob']}{WS_PATH}")
            good = {"running": 1, "inflight": 7, "call": "train", "seq": 4, "for_ms": 1500}
            for extra in ({"running": "lots"}, {"x": 1}, good, {"inflight": -1, "running": 0}):
                beat = encode_control(Kind.HEARTBEAT, "job", "alice", extra=extra)
                await ws.send_bytes(beat.join())
            await ws.send_bytes(encode_data("job", "alice", 1, (1, 0), "v").join())
            reports, acked = [], False
            while not (acked and reports):
                header, _ = decode_frame(await ws.receive_bytes(timeout=5))
                if header.kind is Kind.HEARTBEAT:
                    reports.append(parse_activity(header.extra))
                acked = acked or header.kind is Kind.ACK
            await ws.close()
        assert rt._core.peers.record("alice").activity == Activity(1, 7, "train", 4, 1.5)
        assert reports[0] == Activity(running=0, in_flight=0), "bob reports itself idle"
        stats = rt.stats().peers["alice"]
        assert stats.frames_received == 1 and stats.bytes_received > 0
    finally:
        await rt.shutdown()


async def test_concurrent_slow_gets_each_warn_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import time

    import silo

    @silo.remote
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    async def timed(obj: silo.FedObject) -> float:
        started = time.monotonic()
        await silo.get(obj)
        return time.monotonic() - started

    async def main(party: str) -> list[float]:
        short, long = nap.party("bob").remote(0.45), nap.party("bob").remote(1.05)
        if party == "bob":
            await silo.get([short, long])
            return []
        return list(await asyncio.gather(timed(short), timed(long)))

    interval = 0.3
    config = {"slow_get_warning_s": interval, "cross_silo_comm": {"heartbeat_interval_ms": 100}}
    with caplog.at_level(logging.WARNING, logger="silo"):
        out = await silo.simulate(main, ["alice", "bob"], config=config)
    alice = [r.getMessage() for r in caplog.records if "[alice@" in r.getMessage()]
    waits = zip(("(1, 0)", "(2, 0)"), out["alice"], strict=True)
    for index, (object_id, waited) in enumerate(waits):
        lines = [m for m in alice if f"for object {object_id} from bob" in m]
        expected = math.floor(waited / interval)
        assert expected - 1 <= len(lines) <= expected, (index, waited, alice)
        assert expected >= 1 + index
