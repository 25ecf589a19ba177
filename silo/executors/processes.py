"""The ``processes`` executor: plain calls in a pool of worker processes, each actor in its own.

Workers are ``python child.py FD`` processes (:mod:`silo.executors.child`) started on demand, up
to ``max_workers`` for plain calls plus one per actor. They talk to the party over a socket
pair; functions, arguments and results are pickled with cloudpickle, so closures and functions
defined in ``__main__`` or a program file work. Workers get the party's ``sys.path`` as
``PYTHONPATH``; they never import the party's ``__main__``. A worker runs one call at a time.

A worker that dies while running a call (killed, ``os._exit``, out of memory) fails that call
with :class:`~silo.errors.WorkerLostError` naming its exit status; the pool starts another one
for the next call. A call whose task is cancelled (a shutdown after an error) kills its worker:
unlike a thread, a process can be stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cloudpickle

from ..errors import WorkerLostError
from .base import ActorWorker, Executor, MethodRef

__all__ = ["ProcessExecutor"]

_CHILD = str(Path(__file__).with_name("child.py"))
_HEADER = struct.Struct(">Q")
_EXIT_WAIT_S = 1.0


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "its connection closed"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _child_env() -> dict[str, str]:
    path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


class _Worker:
    """One worker process and its socket; :meth:`request` is called one at a time."""

    def __init__(
        self, popen: subprocess.Popen[bytes], reader: asyncio.StreamReader, writer: Any
    ) -> None:
        self.popen = popen
        self._reader = reader
        self._writer = writer
        self.alive = True

    @classmethod
    async def start(cls) -> _Worker:
        ours, theirs = socket.socketpair()
        try:
            popen = await asyncio.to_thread(
                subprocess.Popen,
                [sys.executable, _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=_child_env(),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return cls(popen, reader, writer)

    async def request(
        self, op: str, target: object, args: tuple[Any, ...], kwargs: Mapping[str, Any], what: str
    ) -> Any:
        """Run one request; raises the call's exception, or WorkerLostError if the worker died."""
        payload = cloudpickle.dumps((op, target, tuple(args), dict(kwargs)))
        try:
            self._writer.write(_HEADER.pack(len(payload)))
            self._writer.write(payload)
            del payload
            await self._writer.drain()
            header = await self._reader.readexactly(_HEADER.size)
            data = await self._reader.readexactly(_HEADER.unpack(header)[0])
        except (OSError, asyncio.IncompleteReadError):
            self.kill()
            code = await self.wait(_EXIT_WAIT_S)
            raise WorkerLostError(
                f"the worker process {self.popen.pid} running {what} died ({_describe_exit(code)})"
            ) from None
        except BaseException:
            self.kill()
            raise
        status, value, tb = cloudpickle.loads(data)
        if status == "ok":
            return value
        if tb:
            value.__cause__ = _RemoteTraceback(tb)
        raise value

    def kill(self) -> None:
        """Stop the process now; idempotent."""
        self.alive = False
        self._writer.close()
        if self.popen.poll() is None:
            self.popen.kill()

    async def wait(self, timeout: float) -> int | None:
        """The exit status once the process ended, or ``None`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A Popen has nothing to await; the exit is polled, briefly.
        while self.popen.poll() is None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return self.popen.returncode

    async def aclose(self) -> None:
        """Let the process end on its own (end of input), then kill it; bounded."""
        self.alive = False
        self._writer.close()
        if await self.wait(_EXIT_WAIT_S) is None:
            self.popen.kill()
            await self.wait(_EXIT_WAIT_S)


class _ProcessActor(ActorWorker):
    """The instance lives in a worker process of its own, started at construction."""

    def __init__(self, owner: ProcessExecutor, name: str) -> None:
        self._owner = owner
        self._name = name
        self._worker: _Worker | None = None
        self._cls: Callable[..., Any] | None = None
        self._closed = False

    async def construct(
        self, cls: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        self._cls = cls
        worker = await self._owner.spawn()
        self._worker = worker
        if self._closed:
            worker.kill()
            raise WorkerLostError(f"actor {self._name} was closed while it was starting")
        await worker.request("construct", cls, args, kwargs, f"{cls.__qualname__}()")

    def method(self, name: str) -> Callable[..., Any]:
        assert self._cls is not None, "method() before construct()"
        return MethodRef(self._cls, name)

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        assert isinstance(fn, MethodRef) and self._worker is not None
        if not self._worker.alive:
            raise WorkerLostError(f"the worker process of actor {self._name} is gone")
        return await self._worker.request("method", fn.name, args, kwargs, fn.__qualname__)

    def close(self) -> None:
        self._closed = True
        if self._worker is not None:
            self._worker.kill()


class ProcessExecutor(Executor):
    """Up to ``max_workers`` worker processes for plain calls, started on demand."""

    kind = "processes"

    def __init__(self, party: str, max_workers: int) -> None:
        self._party = party
        self._max = max_workers
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._count = 0
        self._all: set[_Worker] = set()
        self._closed = False

    async def spawn(self) -> _Worker:
        """A new worker process, reaped by :meth:`aclose`."""
        if self._closed:
            raise WorkerLostError(f"the process executor of {self._party} is closed")
        worker = await _Worker.start()
        self._all.add(worker)
        return worker

    async def _acquire(self) -> _Worker:
        while True:
            if self._idle.empty() and self._count < self._max:
                self._count += 1
                try:
                    return await self.spawn()
                except BaseException:
                    self._count -= 1
                    raise
            worker = await self._idle.get()
            if worker.alive:
                return worker
            self._count -= 1
            self._all.discard(worker)

    async def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        worker = await self._acquire()
        try:
            name = getattr(fn, "__qualname__", None) or type(fn).__name__
            return await worker.request("call", fn, args, kwargs, str(name))
        finally:
            self._idle.put_nowait(worker)

    def actor(self, name: str) -> ActorWorker:
        return _ProcessActor(self, name)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        workers = list(self._all)
        self._all.clear()
        if workers:
            await asyncio.gather(*(w.aclose() for w in workers), return_exceptions=True)
