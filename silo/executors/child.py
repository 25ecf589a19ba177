"""One worker process of the ``processes`` executor, run as a script: ``child.py FD``.

It reads requests from the socket ``FD`` and answers each before reading the next: a frame is
an 8-byte big-endian length and a cloudpickle payload. A request is ``(op, target, args,
kwargs)``: ``call`` runs ``target(*args, **kwargs)``; ``construct`` builds the actor instance
this process keeps; ``method`` calls the method named ``target`` on it. The answer is
``("ok", result, None)`` or ``("err", exception, formatted_traceback)``. A coroutine result is
run to completion on this process's own event loop. End of input (the party closed the socket
or died) ends the process. SIGINT is ignored: the party decides when its workers stop.
"""

import sys

if __name__ == "__main__":
    # This file's directory holds silo's ``dask.py``, which must not shadow the real package.
    del sys.path[0]

import asyncio
import inspect
import signal
import socket
import struct
import traceback
from typing import Any

import cloudpickle

_HEADER = struct.Struct(">Q")


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _answer(outcome: tuple[str, Any, str | None]) -> bytes:
    try:
        return bytes(cloudpickle.dumps(outcome))
    except Exception as exc:
        status, value, tb = outcome
        what = "result" if status == "ok" else f"exception {type(value).__name__}: {value}"
        error = TypeError(f"the {what} cannot be pickled back to the party: {exc!r}")
        return bytes(cloudpickle.dumps(("err", error, tb)))


def serve(sock: socket.socket) -> None:
    """Answer requests until the socket ends."""
    instance: Any = None
    loop: asyncio.AbstractEventLoop | None = None
    while True:
        header = _recv_exact(sock, _HEADER.size)
        if header is None:
            return
        payload = _recv_exact(sock, _HEADER.unpack(header)[0])
        if payload is None:
            return
        result: Any = None
        try:
            op, target, args, kwargs = cloudpickle.loads(payload)
            del payload
            if op == "call":
                result = target(*args, **kwargs)
            elif op == "construct":
                instance = target(*args, **kwargs)
                result = None
            else:
                result = getattr(instance, target)(*args, **kwargs)
            if inspect.isawaitable(result):
                loop = loop or asyncio.new_event_loop()
                result = loop.run_until_complete(result)
            answer = _answer(("ok", result, None))
        except BaseException as exc:
            frames = exc.__traceback__.tb_next if exc.__traceback__ else None
            text = "".join(traceback.format_exception(type(exc), exc, frames))
            answer = _answer(("err", exc, text))
        result = None
        sock.sendall(_HEADER.pack(len(answer)) + answer)
        del answer


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(sys.argv[1]))
    try:
        serve(sock)
    finally:
        sock.close()


if __name__ == "__main__":
    main()
