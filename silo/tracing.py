"""OpenTelemetry spans for calls, sends and receives: the optional extra ``silo[otel]``.

Theory of operation
-------------------
:meth:`Tracing.create` returns ``None`` (and silo does no tracing work at all) unless the
``opentelemetry`` API is installed and the program set a tracer provider
(``opentelemetry.trace.set_tracer_provider``) before ``silo.init``. Otherwise every runtime has
one :class:`Tracing`, and:

* each call of this party is a span ``silo.call NAME`` (attributes ``silo.party``,
  ``silo.call.seq``), from the moment its inputs are there to its end. Its parent is the span
  that brought its first input: the receive span of a value a peer pushed, or the call span of a
  value made here; a call without such an input is a child of whatever span is current where the
  program scheduled it;
* each DATA or ERROR frame sent is a span ``silo.send`` (child of the span of the call that made
  the value, or of the receive span that brought it), and its W3C ``traceparent`` travels in the
  frame header's optional ``trace`` field (:class:`~silo.wire.Header`);
* each DATA or ERROR frame received with a ``traceparent`` is a span ``silo.receive``, child of
  the sender's send span.

So a round that crosses parties (alice's call, its value sent to bob, bob's call on it, its
result sent back) is one trace. Which span made or brought an object is remembered for the last
:data:`REMEMBERED` objects only (older entries are forgotten first), so memory stays bounded.
Frames without a ``trace`` field (tracing off, or an older peer) are exactly the frames of a silo
without this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .graph import FedObject
from .wire import Header, Kind, ObjectId, OutFrame, encode_header

if TYPE_CHECKING:
    # The optional extra silo[otel]: its types only; the module is imported where it is used.
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

__all__ = ["REMEMBERED", "Tracing"]

REMEMBERED = 4096
_TRACED = (Kind.DATA, Kind.ERROR)


def _remember(table: dict[Any, Context], key: object, value: Context) -> None:
    table[key] = value
    if len(table) > REMEMBERED:
        del table[next(iter(table))]


class Tracing:
    """The spans of one party's runtime. Loop thread only; never raises for a bad
    ``traceparent`` (a malformed one starts a new trace)."""

    def __init__(self, tracer: Tracer, party: str) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._tracer = tracer
        self._propagator = TraceContextTextMapPropagator()
        self.party = party
        #: The span that made each object of this party (by sequence id) and the span that
        #: brought each object a peer pushed.
        self._made: dict[int, Context] = {}
        self._brought: dict[ObjectId, Context] = {}

    @classmethod
    def create(cls, party: str) -> Tracing | None:
        """A :class:`Tracing` if OpenTelemetry is installed and a tracer provider is set."""
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        provider = trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
        return cls(provider.get_tracer("silo"), party)

    def _parent(self, object_id: ObjectId) -> Context | None:
        return self._brought.get(object_id) or self._made.get(object_id[0])

    def call_started(self, name: str, seq: int, inputs: Sequence[FedObject]) -> Span:
        """Start the span of call ``seq`` (0: not known); end it with :meth:`end`."""
        parent = next((c for o in inputs if (c := self._parent(o.id)) is not None), None)
        span = self._tracer.start_span(
            f"silo.call {name}",
            context=parent,
            attributes={"silo.party": self.party, "silo.call.seq": seq},
        )
        if seq:
            _remember(self._made, seq, self._trace.set_span_in_context(span))
        return span

    def end(self, span: Span, error: BaseException | None) -> None:
        """End a span started here; ``error`` marks it failed."""
        if error is not None:
            span.record_exception(error)
            span.set_status(self._trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        span.end()

    async def send(
        self, frame: OutFrame, peer: str, write: Callable[[OutFrame], Awaitable[None]]
    ) -> None:
        """Send ``frame`` to ``peer`` with ``write`` as a traced send (:meth:`sending`); the span
        ends when ``write`` returns, failed if it raised an ``Exception``."""
        span, frame = self.sending(frame, peer)
        if span is None:
            await write(frame)
            return
        try:
            await write(frame)
        except Exception as exc:
            self.end(span, exc)
            raise
        except BaseException:
            self.end(span, None)
            raise
        self.end(span, None)

    def sending(self, frame: OutFrame, peer: str) -> tuple[Span | None, OutFrame]:
        """Start the send span of ``frame`` (a DATA or ERROR frame) and return it with the frame
        carrying its ``traceparent``; other kinds are returned as they are, without a span."""
        header = frame.header
        if header.kind not in _TRACED:
            return None, frame
        span = self._tracer.start_span(
            "silo.send",
            context=self._parent(header.object_id),
            kind=self._trace.SpanKind.PRODUCER,
            attributes={
                "silo.party": self.party,
                "silo.peer": peer,
                "silo.object": str(header.object_id),
                "silo.kind": header.kind.name,
                "silo.bytes": frame.nbytes,
            },
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._trace.set_span_in_context(span))
        traced = header._replace(trace=carrier.get("traceparent"))
        return span, OutFrame(traced, encode_header(traced), frame.segments)

    def received(self, header: Header) -> None:
        """A DATA or ERROR frame arrived: record its receive span, child of the sender's."""
        if header.kind not in _TRACED:
            return
        parent = None
        if header.trace is not None:
            parent = self._propagator.extract({"traceparent": header.trace})
        span = self._tracer.start_span(
            "silo.receive",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes={
                "silo.party": self.party,
                "silo.peer": header.src,
                "silo.object": str(header.object_id),
                "silo.kind": header.kind.name,
            },
        )
        span.end()
        _remember(self._brought, header.object_id, self._trace.set_span_in_context(span))
