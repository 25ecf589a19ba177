"""A live 2-party job keeps working, and bob's memory stays bounded, while bob's port is attacked.

The job (tests/programs/fuzz_target.py) runs rounds with a known result until the test tells it
to stop. Meanwhile the test sends bob malformed, truncated, oversized and forged frames on all
three routes, in plain text and over TLS with a valid party certificate. Forged frames use the
real peer's name (the identity question is TLS's), but only ids the job never uses: far ahead of
its calls, or behind them with an index no call has; a forged frame for an object the job uses
would change its result, which is outside what size bounds can prevent.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _attack import (
    FAR,
    MIB,
    Job,
    RssWatch,
    big_body,
    data,
    describe,
    error,
    lying_head,
    post,
    settled_rss,
    vm_rss,
    ws_exchange,
    ws_frame,
)

from silo.transport.base import CONTROL_PATH, DATA_PATH
from silo.wire import PREFIX, Kind, encode_control

from _cli_support import make_tls_files
from multiparty import PROGRAMS, addresses_for


@contextmanager
def job(tmp_path: Path, *, tls: bool, uvloop: bool = True) -> Iterator[Job]:
    """Start the 2-party job, wait until it worked one round; stop and reap it afterwards."""
    addresses = addresses_for(["alice", "bob"])
    stop = tmp_path / "STOP"
    env = {
        **os.environ,
        "SILO_TEST_ADDRESSES": json.dumps(addresses),
        "SILO_FUZZ_STOP": str(stop),
        "SILO_UVLOOP": "1" if uvloop else "0",
    }
    context = None
    if tls:
        make_tls_files(tmp_path, ["alice", "bob"])
        paths = {
            "ca_cert": str(tmp_path / "ca.pem"),
            "cert": str(tmp_path / "{party}.pem"),
            "key": str(tmp_path / "{party}.key"),
        }
        env["SILO_FUZZ_TLS"] = json.dumps(paths)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.load_verify_locations(tmp_path / "ca.pem")
        context.load_cert_chain(tmp_path / "alice.pem", tmp_path / "alice.key")
    procs = {
        party: subprocess.Popen(
            [sys.executable, str(PROGRAMS / "fuzz_target.py"), party],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for party in ("alice", "bob")
    }
    try:
        assert procs["bob"].stdout is not None
        line = procs["bob"].stdout.readline()
        assert line.strip() == "READY", line + procs["bob"].stderr.read()  # type: ignore[union-attr]
        yield Job(procs, int(addresses["bob"].rsplit(":", 1)[1]), stop, context)
    finally:
        stop.touch()
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def finish(running: Job) -> dict[str, Any]:
    """Stop the job; both parties must exit 0 with every round right."""
    running.stop.touch()
    results = {}
    for party, proc in running.procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"{party} exit {proc.returncode}\n{out}\n{err}"
        results[party] = json.loads(out.split("RESULT ", 1)[1])
    assert results["alice"] == results["bob"]
    assert results["bob"]["bad"] == [] and results["bob"]["rounds"] >= 4
    return results["bob"]


def quick_attacks(j: Job) -> list[tuple[str, Callable[[], Any]]]:
    head = lying_head(1 << 30)
    ahead = [data(FAR + i, 0, b"x" * 100) for i in range(50)]
    return [
        ("data: 10 GiB Content-Length", lambda: post(j, DATA_PATH, b"", 10 << 30)),
        ("data: no Content-Length", lambda: post(j, DATA_PATH, b"", -1)),
        (
            "data: header length beyond the body",
            lambda: post(j, DATA_PATH, PREFIX.pack(1 << 20) + b"x" * 96),
        ),
        (
            "data: layout announcing 1 GiB in a 10-byte body",
            lambda: post(j, DATA_PATH, head + b"x" * 10),
        ),
        ("data: 70000 buffers", lambda: post(j, DATA_PATH, lying_head(*([0] * 70_000)))),
        ("data: garbage", lambda: post(j, DATA_PATH, os.urandom(5000))),
        ("data: empty body", lambda: post(j, DATA_PATH, b"")),
        (
            "data: another job",
            lambda: post(j, DATA_PATH, data(FAR, 0, 1, job="x"), **{"X-Silo-Job": "x"}),
        ),
        (
            "data: unknown party",
            lambda: post(
                j, DATA_PATH, data(FAR, 0, 1, src="mallory"), **{"X-Silo-Party": "mallory"}
            ),
        ),
        ("data: id far ahead", lambda: post(j, DATA_PATH, data(FAR + 99, 0, b"y" * (5 * MIB)))),
        (
            "data: id behind, no such output",
            lambda: post(j, DATA_PATH, data(1, 77, b"y" * (5 * MIB))),
        ),
        ("control: garbage", lambda: post(j, CONTROL_PATH, os.urandom(300))),
        ("control: 10 GiB Content-Length", lambda: post(j, CONTROL_PATH, b"", 10 << 30)),
        ("control: DATA frame", lambda: post(j, CONTROL_PATH, data(FAR, 1, 1))),
        ("control: ERROR far ahead", lambda: post(j, CONTROL_PATH, error(FAR + 1, 0))),
        ("control: ERROR behind", lambda: post(j, CONTROL_PATH, error(2, 55))),
        (
            "control: ABORT from a stranger",
            lambda: post(
                j,
                CONTROL_PATH,
                encode_control(
                    Kind.ABORT, "fuzz", "mallory", 1, extra=["mallory", None, None, None]
                ).join(),
            ),
        ),
        ("ws: garbage", lambda: ws_exchange(j, ws_frame(os.urandom(64)))),
        (
            "ws: text then a frame far ahead",
            lambda: ws_exchange(j, ws_frame(b"hello", opcode=1) + ws_frame(data(FAR + 7, 0, 1))),
        ),
        ("ws: message declaring 1 GiB", lambda: ws_exchange(j, ws_frame(b"", declared=1 << 30))),
        (
            "ws: frame longer than its message",
            lambda: ws_exchange(j, ws_frame(PREFIX.pack(5000) + b"\x98")),
        ),
        ("ws: layout lying", lambda: ws_exchange(j, ws_frame(head + b"x"))),
        ("ws: 50 frames far ahead", lambda: ws_exchange(j, *(ws_frame(f) for f in ahead))),
        (
            "ws: frames behind",
            lambda: ws_exchange(j, ws_frame(data(1, 66, 1)), ws_frame(data(3, 9, 2))),
        ),
        (
            "ws: ERROR frames ahead and behind",
            lambda: ws_exchange(j, ws_frame(error(FAR + 3, 0)), ws_frame(error(2, 44))),
        ),
        ("control: body that stops", lambda: post(j, CONTROL_PATH, b"\0" * 10, 1000)),
    ]


async def attack(j: Job, seconds: float) -> None:
    """Big bodies that stall or close, alongside rounds of every quick attack, for ``seconds``."""
    stalled = asyncio.ensure_future(big_body(j, 96 * MIB, then="stall"))
    closed = asyncio.ensure_future(big_body(j, 96 * MIB, then="close"))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, run in quick_attacks(j):
            j.note(name, describe(await run()))
    j.note("data: 1.5 GiB declared, 96 MiB sent, then silence", await stalled)
    j.note("data: 1.5 GiB declared, 96 MiB sent, then closed", await closed)


EXPECTED = {
    "data: 10 GiB Content-Length": "413",
    "data: no Content-Length": "411",
    "data: header length beyond the body": "400",
    "data: layout announcing 1 GiB in a 10-byte body": "400",
    "data: 70000 buffers": "400",
    "data: garbage": "400",
    "data: empty body": "400",
    "data: another job": "409",
    "data: unknown party": "403",
    "data: id far ahead": "200 OK ACK",
    "data: id behind, no such output": "200 OK ACK",
    "control: garbage": "400",
    "control: 10 GiB Content-Length": "413",
    "control: DATA frame": "400",
    "control: ERROR far ahead": "200 OK ACK",
    "control: ERROR behind": "200 OK ACK",
    "control: ABORT from a stranger": "403 Forbidden",
    "ws: garbage": "close 1002",
    "ws: text then a frame far ahead": "ACK",
    "ws: message declaring 1 GiB": "close 1009",
    "ws: frame longer than its message": "close 1002",
    "ws: layout lying": "close 1002",
    "ws: 50 frames far ahead": "ACK x50",
    "ws: frames behind": "ACK x2",
    "ws: ERROR frames ahead and behind": "ACK x2",
    "control: body that stops": "408",
    "data: 1.5 GiB declared, 96 MiB sent, then silence": "bob ",
    "data: 1.5 GiB declared, 96 MiB sent, then closed": "closed mid-body",
}


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_attacks_leave_the_job_and_memory_intact(tmp_path: Path, tls: bool) -> None:
    with job(tmp_path, tls=tls) as running:
        baseline = await settled_rss(running.bob)
        with RssWatch(running.bob) as watch:
            await attack(running, seconds=3.0)
        after = await settled_rss(running.bob)
        result = finish(running)
    print(
        f"\n[{'tls' if tls else 'plain'}] rounds {result['rounds']}; bob RSS baseline "
        f"{baseline / MIB:.0f} MiB, peak {watch.peak / MIB:.0f} MiB, after {after / MIB:.0f} MiB"
    )
    for name, outcome in running.outcomes.items():
        print(f"  {name}: {outcome}")
    for name, expected in EXPECTED.items():
        assert expected in running.outcomes[name], (name, running.outcomes[name])
    assert watch.peak < baseline + 400 * MIB, "bob committed what the attacker only declared"
    assert after < baseline + 64 * MIB, "bob kept the memory of dropped bodies"


async def test_dropped_bodies_free_their_memory_in_a_live_party(tmp_path: Path) -> None:
    """On asyncio's own loop (the attack test runs on uvloop)."""
    with job(tmp_path, tls=False, uvloop=False) as running:
        baseline = await settled_rss(running.bob)
        with RssWatch(running.bob) as stalled:
            outcome = await big_body(running, 128 * MIB, then="stall")
        after_stall = await settled_rss(running.bob)
        with RssWatch(running.bob) as closed:
            await big_body(running, 128 * MIB, then="close")
            deadline = time.monotonic() + 2
            while vm_rss(running.bob) > baseline + 48 * MIB and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            freed_in = 2 - (deadline - time.monotonic())
        after_close = await settled_rss(running.bob)
        finish(running)
    print(
        f"\nbaseline {baseline / MIB:.0f} MiB; stalled body: peak {stalled.peak / MIB:.0f}, "
        f"after drop {after_stall / MIB:.0f} ({outcome}); closed body: peak "
        f"{closed.peak / MIB:.0f}, after {after_close / MIB:.0f} (freed within {freed_in:.2f} s)"
    )
    assert "bob closed" in outcome or "bob reset" in outcome
    for peak in (stalled.peak, closed.peak):
        assert baseline + 96 * MIB < peak < baseline + 128 * MIB + 96 * MIB
    assert after_stall < baseline + 48 * MIB and after_close < baseline + 48 * MIB
