"""OpenTelemetry (``silo[otel]``): calls, sends and receives are spans, one trace across parties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from test_stats import _run

from silo.errors import ProtocolError
from silo.tracing import Tracing
from silo.wire import (
    MAX_TRACE,
    PREFIX,
    Header,
    Kind,
    decode_frame,
    encode_control,
    encode_header,
)


def test_the_trace_field_is_optional_on_the_wire() -> None:
    plain = Header(Kind.DATA, "job", "alice", 1, 2, 0, [0, []])
    traced = Header(
        Kind.DATA, "job", "alice", 1, 2, 0, [0, []], trace="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    assert decode_frame(encode_header(plain))[0] == plain
    assert decode_frame(encode_header(traced))[0] == traced
    assert len(encode_header(traced)) > len(encode_header(plain))
    beat = encode_control(Kind.HEARTBEAT, "job", "alice")
    assert decode_frame(beat.join())[0].trace is None
    for bad in ("x" * (MAX_TRACE + 1), 7):
        head = _prefixed([1, int(Kind.DATA), "job", "alice", 1, 2, 0, [0, []], bad])
        with pytest.raises(ProtocolError, match="trace context"):
            decode_frame(head)


def _prefixed(fields: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(fields)
    return PREFIX.pack(len(packed)) + packed


def test_no_tracing_without_a_tracer_provider() -> None:
    assert Tracing.create("alice") is None


def test_one_round_across_two_processes_is_one_trace(tmp_path: Path) -> None:
    out = _run("traced", tmp_path)
    assert out["alice"]["result"] > 0 and out["bob"]["result"] > 0
    spans: list[dict[str, Any]] = []
    for party in ("alice", "bob"):
        spans += json.loads((tmp_path / f"{party}.spans.json").read_text())
    assert len({s["trace_id"] for s in spans}) == 1, spans

    def one(name: str, party: str, obj: str | None = None) -> dict[str, Any]:
        found = [
            s
            for s in spans
            if s["name"] == name and s["party"] == party and (obj is None or s["object"] == obj)
        ]
        assert len(found) == 1, (name, party, obj, spans)
        return found[0]

    make = one("silo.call make", "alice")
    send_blob = one("silo.send", "alice", "(1, 0)")
    receive_blob = one("silo.receive", "bob", "(1, 0)")
    size = one("silo.call size", "bob")
    send_size = one("silo.send", "bob", "(2, 0)")
    receive_size = one("silo.receive", "alice", "(2, 0)")
    assert make["parent"] is None
    assert send_blob["parent"] == make["span_id"]
    assert receive_blob["parent"] == send_blob["span_id"]
    assert size["parent"] == receive_blob["span_id"]
    assert send_size["parent"] == size["span_id"]
    assert receive_size["parent"] == send_size["span_id"]
    assert len(spans) == 6, spans
