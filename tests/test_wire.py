"""Frames round-trip in plain synchronous code, and malformed frames are refused clearly."""

from __future__ import annotations

import os
import random
import traceback
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

import silo
from silo.errors import (
    DivergenceError,
    FedRemoteError,
    ProtocolError,
    RemoteCause,
    SerializationError,
)
from silo.wire import (
    MAX_ACKS,
    MAX_CALL_NAME,
    PREFIX,
    ErrorInfo,
    Kind,
    began_in,
    decode_data,
    decode_frame,
    encode_ack,
    encode_control,
    encode_data,
    user_traceback,
)


def test_data_frame_round_trip_small_value() -> None:
    frame = encode_data("job", "alice", 7, (3, 1), {"a": [1, 2.5, "x"]})
    header, body = decode_frame(frame.join())
    assert (header.kind, header.job, header.src, header.msg_id) == (Kind.DATA, "job", "alice", 7)
    assert header.object_id == (3, 1)
    assert decode_data(header, body, None) == {"a": [1, 2.5, "x"]}


def test_large_array_travels_as_an_uncopied_out_of_band_segment() -> None:
    arr = np.arange(1 << 16, dtype=np.float64)
    frame = encode_data("job", "alice", 1, (1, 0), arr)
    pickled, *buffers = frame.segments
    assert len(pickled) < 1024
    assert len(buffers) == 1
    assert np.shares_memory(np.frombuffer(buffers[0], dtype=np.float64), arr)
    header, body = decode_frame(frame.join())
    out = decode_data(header, body, None)
    assert isinstance(out, np.ndarray) and np.array_equal(out, arr)
    out[0] = 42.0  # received arrays are writable


def test_streamed_parts_decode_like_a_whole_body() -> None:
    arr = np.ones((64, 64))
    frame = encode_data("job", "alice", 1, (1, 0), arr)
    header, _ = decode_frame(frame.join())
    parts = [bytes(frame.segments[0]), *(bytearray(s) for s in frame.segments[1:])]
    assert np.array_equal(decode_data(header, parts, None), arr)  # type: ignore[arg-type]


def test_error_frame_is_plain_msgpack_fields() -> None:
    info = ErrorInfo("alice", "ValueError", "bad", "Traceback ...")
    frame = encode_control(Kind.ERROR, "job", "bob", 3, (5, 0), info.to_wire())
    raw = frame.join()
    assert b"cloudpickle" not in raw and b"\x80\x05" not in raw
    header, body = decode_frame(raw)
    assert header.kind is Kind.ERROR and len(body) == 0
    assert header.error_info() == info
    err = header.error_info().to_exception()
    assert err.src_party == "alice"
    assert err.cause == RemoteCause("ValueError", "bad", "Traceback ...")


def test_data_and_error_frames_carry_the_call_that_produced_them() -> None:
    frame = encode_data("job", "alice", 7, (3, 1), 5, call="Counter.inc")
    header, body = decode_frame(frame.join())
    assert header.call == "Counter.inc" and decode_data(header, body, None) == 5
    assert decode_frame(encode_data("job", "alice", 7, (3, 1), 5).join())[0].call == ""
    long = encode_data("job", "alice", 7, (3, 1), 5, call="f" * 500)
    assert decode_frame(long.join())[0].call == "f" * MAX_CALL_NAME
    info = ErrorInfo("alice", None, None, None)
    error = encode_control(Kind.ERROR, "job", "bob", 3, (5, 0), info.to_wire("train"))
    header, _ = decode_frame(error.join())
    assert header.call == "train" and header.error_info() == info
    plain = encode_control(Kind.ERROR, "job", "bob", 3, (5, 0), info.to_wire())
    assert decode_frame(plain.join())[0].call == ""


def test_the_call_where_an_error_began_crosses_whatever_expose_says() -> None:
    exc = ValueError("boom")
    began_in(exc, "train", 12)
    began_in(exc, "evaluate", 13)  # re-raised later: it began in the first call
    for expose, cause in ((False, None), (True, "ValueError")):
        info = ErrorInfo.from_exception(exc, party="alice", expose=expose)
        assert info.site == ("train", 12) and info.type_name == cause
        for kind, call in ((Kind.ERROR, "evaluate"), (Kind.ERROR, ""), (Kind.ABORT, "")):
            frame = encode_control(kind, "job", "alice", 1, (13, 0), info.to_wire(call))
            header, _ = decode_frame(frame.join())
            assert header.error_info() == info and header.call == call
        error = info.to_exception()
        assert error.site == ("train", 12) and str(error).startswith("FedRemoteError occurred at")
        forwarded = ErrorInfo.from_exception(error, party="bob", expose=expose)
        assert forwarded.origin == "alice" and forwarded.site == ("train", 12)
    shown = ErrorInfo.from_exception(exc, party="alice", expose=True).to_exception()
    assert (
        shown.headline() == "FedRemoteError occurred at alice: ValueError: boom (in train, call 12)"
    )
    hidden = ErrorInfo.from_exception(exc, party="alice", expose=False).to_exception()
    assert hidden.headline() == "FedRemoteError occurred at alice (in train, call 12)"
    assert str(hidden) == "FedRemoteError occurred at alice"
    assert ErrorInfo.from_exception(KeyError("k"), party="alice", expose=False).site is None


@pytest.mark.parametrize(
    "extra",
    [
        ["alice", None, None, None, "train", ["train"]],
        ["alice", None, None, None, "train", ["train", -1]],
        ["alice", None, None, None, "train", ["train", True]],
        ["alice", None, None, None, "train", ["x" * 1000, 1]],
        ["alice", None, None, None, "train", ["train", 1], "more"],
    ],
)
def test_a_malformed_error_site_is_a_protocol_error(extra: list[Any]) -> None:
    raw = encode_control(Kind.ERROR, "job", "alice", 1, (1, 0), extra).join()
    with pytest.raises(ProtocolError, match="malformed error fields"):
        decode_frame(raw)
    abort = encode_control(Kind.ABORT, "job", "alice", 1, (0, 0), ["alice", None, None, None, "x"])
    with pytest.raises(ProtocolError, match="malformed error fields"):
        decode_frame(abort.join())


def test_a_divergence_crosses_with_its_message_whatever_expose_says() -> None:
    error = DivergenceError("bob", "programs diverged at call 3: alice ran f, bob ran g", 3)
    info = ErrorInfo.from_exception(error, party="alice", expose=False)
    assert info.origin == "alice" and info.message == str(error)
    rebuilt = info.to_exception()
    assert isinstance(rebuilt, DivergenceError) and str(rebuilt) == str(error)
    assert rebuilt.src_party == "alice"


def _frame(fields: list[object], body: bytes = b"") -> bytes:
    packed = msgpack.packb(fields)
    return PREFIX.pack(len(packed)) + packed + body


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "too short"),
        (b"\x00\x00\x00\x00", "out of range"),
        (PREFIX.pack(100) + b"\x91", "truncated"),
        (PREFIX.pack(3) + b"\xc1\xc1\xc1", "undecodable"),
        (_frame([1, 2, 3]), "8-field"),
        (_frame([9, 1, "j", "a", 0, 0, 0, [0, []]]), "protocol version 9"),
        (_frame([1, 99, "j", "a", 0, 0, 0, None]), "unknown frame kind 99"),
        (_frame([1, 1, 5, "a", 0, 0, 0, [0, []]]), "must be strings"),
        (_frame([1, 1, "j", "a", -1, 0, 0, [0, []]]), "msg_id must be a non-negative"),
        (_frame([1, 1, "j", "a", 0, 0, 0, "nope"]), "malformed data layout"),
        (_frame([1, 1, "j", "a", 0, 0, 0, [4, [2]]], b"abc"), "header announces 6"),
        (_frame([1, 2, "j", "a", 0, 0, 0, [1, 2, 3, 4]]), "malformed error fields"),
        (_frame([1, 5, "j", "a", 0, 0, 0, None]), "reject frame without a reason"),
        (_frame([1, 1, "j", "a", 0, 0, 0, [0, [], 5]]), "malformed data layout"),
        (_frame([1, 1, "j", "a", 0, 0, 0, [0, [], "f" * 129]]), "malformed data layout"),
        (_frame([1, 1, "j", "a", 0, 0, 0, [0, [], "f", "g"]]), "malformed data layout"),
        (_frame([1, 2, "j", "a", 0, 0, 0, ["a", None, None, None, 7]]), "malformed error"),
        (_frame([1, 2, "j", "a", 0, 0, 0, ["a", None, None, None, "f" * 129]]), "malformed"),
        (_frame([1, 3, "j", "a", 0, 0, 0, ["a", None, None, None, "train"]]), "malformed"),
    ],
)
def test_malformed_frames_raise_protocol_error(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode_frame(raw)


def test_error_info_hides_everything_unless_exposed() -> None:
    try:
        raise ValueError("secret detail")
    except ValueError as exc:
        hidden = ErrorInfo.from_exception(exc, party="alice", expose=False)
        shown = ErrorInfo.from_exception(exc, party="alice", expose=True)
    assert hidden == ErrorInfo("alice")
    assert shown.type_name == "ValueError" and shown.message == "secret detail"
    assert shown.traceback is not None and "secret detail" in shown.traceback
    assert str(hidden.to_exception()) == "FedRemoteError occurred at alice"


def test_cascading_error_keeps_its_origin() -> None:
    upstream = FedRemoteError("alice", RemoteCause("KeyError", "'k'", "tb"))
    info = ErrorInfo.from_exception(upstream, party="bob", expose=True)
    assert info.origin == "alice" and info.type_name == "KeyError"
    assert ErrorInfo.from_exception(upstream, party="bob", expose=False) == ErrorInfo("alice")


def test_user_traceback_leaves_out_silo_frames() -> None:
    package_dir = os.path.dirname(os.path.abspath(silo.__file__))
    # A frame whose code lives inside the package, as silo's own frames do.
    namespace: dict[str, Any] = {}
    inside = os.path.join(package_dir, "_runner_for_test.py")
    exec(compile("def run(fn):\n    fn()\n", inside, "exec"), namespace)

    def user_code() -> None:
        raise RuntimeError("in user code")

    try:
        namespace["run"](user_code)
    except RuntimeError as exc:
        assert any(f.filename == inside for f in traceback.extract_tb(exc.__traceback__))
        text = user_traceback(exc)
    assert "user_code" in text and "RuntimeError: in user code" in text
    assert inside not in text and package_dir + os.sep not in text


def _mutations(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    choice = rng.randrange(4)
    if choice == 0 and data:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice == 1:
        del data[rng.randrange(len(data) + 1) :]
    elif choice == 2:
        data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(data)


def test_any_corrupted_frame_is_a_protocol_error_or_decodes() -> None:
    """Bytes from the network never raise anything but ProtocolError (or SerializationError for
    a corrupt pickle, which the server turns into a refusal)."""
    rng = random.Random(20261121)
    frames = [
        encode_data("job", "alice", 7, (3, 1), {"a": [1, 2.5, "x"]}).join(),
        encode_data("job", "alice", 8, (4, 0), np.arange(16.0)).join(),
        encode_control(Kind.ERROR, "job", "bob", 3, (5, 0), ["alice", "E", "m", "t"]).join(),
        encode_control(Kind.ERROR, "job", "bob", 4, (5, 0), ["a", None, None, None, "f"]).join(),
        encode_data("job", "alice", 9, (4, 0), [1, 2], call="Counter.inc").join(),
        encode_control(Kind.ACK, "job", "bob", 9).join(),
    ]
    for _ in range(3000):
        raw = _mutations(rng.choice(frames), rng)
        try:
            header, body = decode_frame(raw)
            if header.kind is Kind.DATA:
                decode_data(header, body, {"numpy": "*"})
        except (ProtocolError, SerializationError):
            pass


def test_an_ack_lists_the_ids_it_acknowledges_and_nothing_else() -> None:
    header, _ = decode_frame(encode_ack("job", "bob", [3, 4, 9]))
    assert header.kind is Kind.ACK and header.acked() == [3, 4, 9]
    single, _ = decode_frame(encode_ack("job", "bob", [5]))
    assert single.extra is None and single.acked() == [5]
    for bad in (["x"], [0], [True], list(range(1, MAX_ACKS + 2)), {"a": 1}):
        with pytest.raises(ProtocolError, match="acknowledged ids"):
            decode_frame(encode_control(Kind.ACK, "job", "bob", 1, extra=bad).join())
