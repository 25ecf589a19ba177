"""Frames on the wire: synchronous, pure encode and decode, testable without a loop.

A frame is ``u32 header length | msgpack header | body``. The header is a msgpack array::

    [version, kind, job, src_party, msg_id, seq, index, extra]          (+ [trace], optional)

``(seq, index)`` is the object id the frame is about (``0, 0`` when none). ``extra`` depends on
the kind:

=========  ==========================================================================
DATA       ``[pickle_len, [buffer_len, ...], call]``; the body is the pickle stream
           followed by the out-of-band buffers, back to back
ERROR      ``[origin, type_name, message, traceback, call, site]`` (``type_name``,
           ``message`` and ``traceback`` may be nil; ``call`` and ``site``
           optional); the object failed at ``origin``, in the call ``site``
           (``[name, call id]``) when it began in one. Plain msgpack, never pickled.
ABORT      as ERROR, not tied to an object (``call`` empty): the sender stopped on
           an error
ACK        nil or ``[msg_id, ...]``: the receiver stored message ``msg_id`` and the
           others listed (at most :data:`MAX_ACKS`); answers to websocket DATA frames
           are batched this way
REJECT     a reason string: the receiver refused ``msg_id`` for good
HEARTBEAT  nil or a small map (room for the sender's activity): sent by both ends of every
           websocket every ``heartbeat_interval_ms``; never answered
GOODBYE    nil: the sender finished cleanly and will send nothing more; answered ACK
=========  ==========================================================================

``call`` is the fingerprint of the call that produced the object: the qualified name of its
function or method (``train``, ``Counter.inc``), at most :data:`MAX_CALL_NAME` characters. A
receiver whose own call at that id differs knows the parties' programs diverged. It is optional
(a frame without it is not checked), so the frames of older tests and tools still decode.

ERROR and ABORT frames about a lost peer carry ``type_name`` :data:`PEER_UNAVAILABLE` and the
reason as ``message`` (whatever ``expose_error_trace`` says), so every party raises
``PeerUnavailableError`` naming the lost party; those about diverged programs carry
:data:`DIVERGED` and the message naming both calls, so every party raises ``DivergenceError``.
A clean shutdown is told by the GOODBYE frame, acknowledged before the websockets close: close
codes (``CLOSE_GOODBYE``, ``CLOSE_ABORT``) are informative only, since a TLS close may be lost on
the way.
"""

from __future__ import annotations

import os
import struct
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from . import serde
from .errors import (
    DivergenceError,
    FedRemoteError,
    PeerUnavailableError,
    ProtocolError,
    RemoteCause,
)

__all__ = [
    "CLOSE_ABORT",
    "CLOSE_GOODBYE",
    "DIVERGED",
    "MAX_ACKS",
    "MAX_CALL_NAME",
    "PEER_UNAVAILABLE",
    "PROTOCOL_VERSION",
    "ErrorInfo",
    "Header",
    "Kind",
    "ObjectId",
    "OutFrame",
    "decode_data",
    "decode_frame",
    "decode_header",
    "encode_ack",
    "encode_data",
    "encode_header",
    "began_in",
    "header_length",
]

PROTOCOL_VERSION = 1
CLOSE_GOODBYE = 4000
CLOSE_ABORT = 4001
#: The remote type name that rebuilds a :class:`PeerUnavailableError` on receipt.
PEER_UNAVAILABLE = "silo.PeerUnavailableError"
#: The remote type name that rebuilds a :class:`DivergenceError` on receipt.
DIVERGED = "silo.DivergenceError"
PREFIX = struct.Struct("!I")
MAX_HEADER = 1 << 20
#: Out-of-band buffers one DATA frame may list: each costs the receiver an object whatever its
#: length, so their number is bounded too. A value with more travels with them in its pickle.
MAX_BUFFERS = 1 << 16
#: Message ids one ACK frame may acknowledge beside its own ``msg_id``.
MAX_ACKS = 4096
#: The longest trace context a header may carry (a W3C ``traceparent`` is 55 characters).
MAX_TRACE = 256
#: The longest call fingerprint a DATA or ERROR frame carries (longer names are truncated).
MAX_CALL_NAME = 128

ObjectId = tuple[int, int]


class Kind(IntEnum):
    DATA = 1
    ERROR = 2
    ABORT = 3
    ACK = 4
    REJECT = 5
    HEARTBEAT = 6
    GOODBYE = 7


_KINDS = {int(k): k for k in Kind}

_SILO_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without silo's own frames: what the user's code did."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_SILO_DIR)
    ]
    head = "Traceback (most recent call last):\n" if frames else ""
    return (
        head
        + "".join(traceback.format_list(frames))
        + "".join(traceback.format_exception_only(type(exc), exc))
    )


@dataclass(frozen=True)
class ErrorInfo:
    """A failure as it crosses the wire: the origin party and, if exposed, what it was."""

    origin: str
    type_name: str | None = None
    message: str | None = None
    traceback: str | None = None
    #: The call where the failure began, ``(name, call id)``, if it began in one.
    site: tuple[str, int] | None = None

    def to_exception(self) -> FedRemoteError:
        if self.type_name == PEER_UNAVAILABLE:
            return PeerUnavailableError(self.origin, self.message or "")
        if self.type_name == DIVERGED:
            return DivergenceError(self.origin, self.message or "programs diverged")
        cause = None
        if self.type_name is not None:
            cause = RemoteCause(self.type_name, self.message or "", self.traceback or "")
        return FedRemoteError(self.origin, cause, site=self.site)

    @classmethod
    def from_exception(cls, exc: BaseException, *, party: str, expose: bool) -> ErrorInfo:
        """Describe ``exc`` raised in ``party``; a cascading FedRemoteError keeps its origin.

        A :class:`PeerUnavailableError` always crosses with its reason, and a
        :class:`DivergenceError` with its message (only call names), so each is rebuilt as such.
        The call where ``exc`` began (:func:`began_in`) crosses whatever ``expose`` says.
        """
        if isinstance(exc, PeerUnavailableError):
            return cls(exc.src_party, PEER_UNAVAILABLE, exc.reason, None)
        if isinstance(exc, DivergenceError):
            return cls(party, DIVERGED, exc.message, None)
        if isinstance(exc, FedRemoteError):
            site = exc.site
            if expose and exc.cause is not None:
                cause = exc.cause
                return cls(exc.src_party, cause.type_name, cause.message, cause.traceback, site)
            if expose and type(exc) is not FedRemoteError:
                return cls(exc.src_party, type(exc).__name__, str(exc), "", site)
            return cls(exc.src_party, site=site)
        site = getattr(exc, _SITE, None)
        if not expose:
            return cls(party, site=site)
        return cls(party, type(exc).__qualname__, str(exc), user_traceback(exc), site)

    def to_wire(self, call: str = "") -> list[Any]:
        """The ``extra`` of an ERROR (about the call named ``call``) or ABORT frame."""
        fields: list[Any] = [self.origin, self.type_name, self.message, self.traceback]
        if call or self.site is not None:
            fields.append(call[:MAX_CALL_NAME])
        if self.site is not None:
            fields.append([self.site[0][:MAX_CALL_NAME], self.site[1]])
        return fields


_SITE = "_silo_site"


def began_in(exc: BaseException, name: str, seq: int) -> None:
    """Note that ``exc`` was raised by this party's call ``seq`` of ``name`` (kept if already
    noted: an exception re-raised by a later call began in the first)."""
    if getattr(exc, _SITE, None) is None:
        try:
            setattr(exc, _SITE, (name, seq))
        except AttributeError:
            pass


class Header(NamedTuple):
    """A decoded frame header (a tuple: one is made per frame, on the hot path)."""

    kind: Kind
    job: str
    src: str
    msg_id: int = 0
    seq: int = 0
    index: int = 0  # type: ignore[assignment]  # shadows tuple.index, as intended
    extra: Any = None
    version: int = PROTOCOL_VERSION
    #: Optional W3C ``traceparent`` (:mod:`silo.tracing`): a ninth header field, present only
    #: when set, so frames without it are unchanged.
    trace: str | None = None

    @property
    def object_id(self) -> ObjectId:
        return (self.seq, self.index)

    def error_info(self) -> ErrorInfo:
        """The ErrorInfo of an ERROR or ABORT header (validated by :func:`decode_header`)."""
        origin, type_name, message, trace = self.extra[:4]
        site = (self.extra[5][0], self.extra[5][1]) if len(self.extra) == 6 else None
        return ErrorInfo(origin, type_name, message, trace, site)

    def data_layout(self) -> tuple[int, list[int]]:
        """``(pickle_len, buffer_lens)`` of a DATA header (validated by :func:`decode_header`)."""
        return self.extra[0], self.extra[1]

    def acked(self) -> list[int]:
        """The message ids an ACK header acknowledges (validated by :func:`decode_header`)."""
        return [self.msg_id, *self.extra] if self.extra else [self.msg_id]

    @property
    def call(self) -> str:
        """The fingerprint of the call a DATA or ERROR frame is about; ``""`` when absent."""
        if self.kind is Kind.DATA and len(self.extra) == 3:
            return str(self.extra[2])
        if self.kind is Kind.ERROR and len(self.extra) >= 5:
            return str(self.extra[4])
        return ""


class OutFrame(NamedTuple):
    """An encoded frame: the prefixed header and the body segments, which are not copied."""

    header: Header
    head: bytes
    segments: Sequence[bytes | memoryview]

    @property
    def nbytes(self) -> int:
        return len(self.head) + sum(len(s) for s in self.segments)

    def join(self) -> bytes:
        """The whole frame as one bytes object (for small frames)."""
        return b"".join((self.head, *self.segments))


def encode_header(header: Header) -> bytes:
    """The ``u32 length | msgpack header`` prefix of a frame."""
    fields = [
        header.version,
        int(header.kind),
        header.job,
        header.src,
        header.msg_id,
        header.seq,
        header.index,
        header.extra,
    ]
    if header.trace is not None:
        fields.append(header.trace)
    packed: bytes = msgpack.packb(fields)
    return PREFIX.pack(len(packed)) + packed


def header_length(prefix: bytes | memoryview) -> int:
    """The header length announced by the first four bytes of a frame."""
    if len(prefix) < PREFIX.size:
        raise ProtocolError(f"frame too short: {len(prefix)} bytes")
    (length,) = PREFIX.unpack_from(prefix)
    if not 0 < length <= MAX_HEADER:
        raise ProtocolError(f"frame header length {length} out of range")
    return int(length)


def _is_call_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_CALL_NAME


def _is_site(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and _is_call_name(value[0])
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and value[1] >= 0
    )


def _is_id_list(extra: object) -> bool:
    return (
        isinstance(extra, list)
        and len(extra) <= MAX_ACKS
        and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in extra)
    )


def _check_error_extra(extra: object, *, with_call: bool) -> None:
    if not (
        isinstance(extra, list)
        and 4 <= len(extra) <= 6
        and (len(extra) == 4 or (_is_call_name(extra[4]) and (with_call or not extra[4])))
        and (len(extra) < 6 or _is_site(extra[5]))
        and isinstance(extra[0], str)
        and all(v is None or isinstance(v, str) for v in extra[1:4])
    ):
        raise ProtocolError(f"malformed error fields: {extra!r:.200}")


def _check_data_extra(extra: object) -> None:
    if not (
        isinstance(extra, list)
        and (len(extra) == 2 or (len(extra) == 3 and _is_call_name(extra[2])))
        and isinstance(extra[0], int)
        and not isinstance(extra[0], bool)
        and extra[0] >= 0
        and isinstance(extra[1], list)
        and len(extra[1]) <= MAX_BUFFERS
        and all(isinstance(n, int) and n >= 0 for n in extra[1])
    ):
        raise ProtocolError(
            f"malformed data layout (at most {MAX_BUFFERS} buffers of non-negative length, a call "
            f"name of at most {MAX_CALL_NAME} characters): "
            f"{extra!r:.200}"
        )


def decode_header(raw: bytes | memoryview) -> Header:
    """Decode and validate a msgpack header; raises :class:`ProtocolError` when malformed."""
    try:
        fields = msgpack.unpackb(raw, use_list=True, raw=False)
    except Exception as exc:
        raise ProtocolError(f"undecodable frame header: {exc}") from exc
    if not isinstance(fields, list) or len(fields) not in (8, 9):
        raise ProtocolError("frame header is not an 8-field array (9 with a trace context)")
    version, kind, job, src, msg_id, seq, index, extra = fields[:8]
    trace = fields[8] if len(fields) == 9 else None
    if trace is not None and not (isinstance(trace, str) and len(trace) <= MAX_TRACE):
        raise ProtocolError(f"frame trace context must be a short string, got {trace!r:.60}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {version!r} is not supported (this party speaks {PROTOCOL_VERSION})"
        )
    kind = _KINDS.get(kind) if type(kind) is int else None
    if kind is None:
        raise ProtocolError(f"unknown frame kind {fields[1]!r}")
    if type(job) is not str or type(src) is not str:
        raise ProtocolError("frame job and source party must be strings")
    if not (
        type(msg_id) is int
        and type(seq) is int
        and type(index) is int
        and msg_id >= 0
        and seq >= 0
        and index >= 0
    ):
        for name, value in (("msg_id", msg_id), ("seq", seq), ("index", index)):
            if type(value) is not int or value < 0:
                raise ProtocolError(
                    f"frame {name} must be a non-negative integer, got {value!r:.50}"
                )
    if kind in (Kind.ERROR, Kind.ABORT):
        _check_error_extra(extra, with_call=kind is Kind.ERROR)
    elif kind is Kind.DATA:
        _check_data_extra(extra)
    elif kind is Kind.ACK and not (extra is None or _is_id_list(extra)):
        raise ProtocolError(f"malformed acknowledged ids: {extra!r:.200}")
    elif kind is Kind.REJECT and not isinstance(extra, str):
        raise ProtocolError("reject frame without a reason")
    elif kind is Kind.HEARTBEAT and not (
        extra is None or (isinstance(extra, dict) and all(isinstance(k, str) for k in extra))
    ):
        raise ProtocolError(f"malformed heartbeat fields: {extra!r:.200}")
    return Header(kind, job, src, msg_id, seq, index, extra, version, trace)


def decode_frame(frame: bytes | memoryview) -> tuple[Header, memoryview]:
    """Split a whole frame into its header and a view of its body."""
    view = memoryview(frame)
    length = header_length(view[: PREFIX.size])
    end = PREFIX.size + length
    if len(view) < end:
        raise ProtocolError(f"frame truncated: header needs {end} bytes, got {len(view)}")
    header = decode_header(view[PREFIX.size : end])
    body = view[end:]
    if header.kind is Kind.DATA:
        pickle_len, buffer_lens = header.data_layout()
        if pickle_len + sum(buffer_lens) != len(body):
            raise ProtocolError(
                f"data frame body is {len(body)} bytes, header announces "
                f"{pickle_len + sum(buffer_lens)}"
            )
    return header, body


def encode_data(
    job: str, src: str, msg_id: int, object_id: ObjectId, value: object, call: str = ""
) -> OutFrame:
    """A DATA frame for ``value`` produced by ``call`` (truncated to :data:`MAX_CALL_NAME`;
    ``""`` sends none); large buffers stay as uncopied segments."""
    data, buffers = serde.dumps(value, max_buffers=MAX_BUFFERS)
    layout: list[Any] = [len(data), [b.nbytes for b in buffers]]
    if call:
        layout.append(call[:MAX_CALL_NAME])
    header = Header(Kind.DATA, job, src, msg_id, object_id[0], object_id[1], layout)
    return OutFrame(header, encode_header(header), [data, *buffers])


def encode_control(
    kind: Kind, job: str, src: str, msg_id: int = 0, object_id: ObjectId = (0, 0), extra: Any = None
) -> OutFrame:
    """A frame with no body (ERROR, ABORT, ACK, REJECT, HEARTBEAT, GOODBYE)."""
    header = Header(kind, job, src, msg_id, object_id[0], object_id[1], extra)
    return OutFrame(header, encode_header(header), ())


def encode_ack(job: str, src: str, msg_ids: Sequence[int]) -> bytes:
    """One ACK frame (prefixed header, no body) for the non-empty ``msg_ids``, at most
    :data:`MAX_ACKS` + 1 of them."""
    rest = list(msg_ids[1:]) or None
    return encode_control(Kind.ACK, job, src, msg_ids[0], extra=rest).head


def decode_data(
    header: Header,
    body: memoryview | Sequence[Any],
    allowed: Mapping[str, tuple[str, ...] | str] | str | None,
) -> object:
    """Rebuild the value of a DATA frame.

    ``body`` is either the whole contiguous body or ``[pickle_bytes, buffer, ...]`` already split
    (the streaming receiver reads each buffer into its own memory).
    """
    pickle_len, buffer_lens = header.data_layout()
    if isinstance(body, memoryview):
        parts: list[Any] = []
        offset = pickle_len
        for n in buffer_lens:
            # A private, writable copy: arrays rebuilt over it can be modified in place.
            parts.append(bytearray(body[offset : offset + n]))
            offset += n
        return serde.loads(body[:pickle_len], parts, allowed)
    parts = list(body)
    return serde.loads(parts[0], parts[1:], allowed)
