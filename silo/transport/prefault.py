"""Memory for received buffers, committed as the bytes arrive.

A large part is an anonymous mapping: the kernel commits a page only when it is first written,
so a frame that announces gigabytes and sends a few megabytes costs a few megabytes. Writing
into fresh pages one fault at a time inside the socket copy is slow, though, so a helper thread
faults pages in ahead of the copy (``MADV_POPULATE_WRITE``, Linux 5.14+, in chunks, the GIL
released). It never runs more than a bounded window ahead of the write position: what it
commits is what arrived plus at most ``window`` bytes.

Theory of operation of a :class:`Prefaulter`: the event loop reports the write position with
:meth:`~Prefaulter.advance`; the thread faults in ``[populated, min(size, written + window))``
one chunk at a time and sleeps on a condition when it has caught up. :meth:`~Prefaulter.stop`
wakes it for good; it leaves after the chunk in progress (about a millisecond) and drops its
reference to the mapping; a receiver that drops a body waits for that, then unmaps at once.

:class:`PrefaultSlots` caps how many prefaulters run at once in one listener, so many
connections each announcing a huge body cannot each get a window committed in advance: the
bodies beyond the cap are received without prefaulting (slower, still correct).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import threading
from collections.abc import Callable

__all__ = ["PrefaultSlots", "Prefaulter", "allocate", "can_prefault", "release"]

#: Parts smaller than this are plain bytearrays.
SMALL = 1 << 16
#: Parts smaller than this are not worth a helper thread.
PREFAULT_MIN = 4 << 20
#: How far ahead of the write position pages are committed.
WINDOW = 32 << 20
#: Bytes faulted in per ``madvise`` call.
CHUNK = 2 << 20
#: Prefaulters running at once per listener.
SLOTS = 4

_MADV_POPULATE_WRITE = 23
_JOIN_TIMEOUT = 1.0


def _load_madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _load_madvise()


def can_prefault() -> bool:
    """Whether this platform has ``madvise`` (the call itself may still be refused)."""
    return _madvise is not None


def allocate(size: int) -> bytearray | mmap.mmap:
    """Writable memory for one part.

    Parts under :data:`PREFAULT_MIN` are ``bytearray``: committed at once (at most 4 MiB per
    part being received), from the allocator's heap, whose pages a part received before leaves
    mapped, so a run of mid-size frames takes no page faults. Larger parts are private
    anonymous mappings, of which nothing is committed before it is written.
    """
    if size < PREFAULT_MIN or not hasattr(mmap, "MAP_ANONYMOUS"):
        return bytearray(size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def release(part: object) -> None:
    """Unmap ``part`` now if it is a mapping nobody else reads (idempotent, never raises).

    A mapping still exported (a view or the prefaulter thread in a call) is left to be freed
    when its last reference goes.
    """
    if isinstance(part, mmap.mmap):
        try:
            part.close()
        except BufferError:
            pass


class PrefaultSlots:
    """How many prefaulters may run at once. Used from the event loop thread only."""

    def __init__(self, slots: int = SLOTS) -> None:
        self._free = slots

    @property
    def free(self) -> int:
        return self._free

    def take(self) -> bool:
        if self._free <= 0:
            return False
        self._free -= 1
        return True

    def give(self) -> None:
        self._free += 1


class Prefaulter:
    """Faults in the pages of ``memory`` from a helper thread, at most ``window`` bytes ahead
    of the write position (plus one chunk of rounding). ``advance`` and ``stop`` are called from
    the event loop; ``stop`` is idempotent."""

    def __init__(
        self,
        memory: mmap.mmap,
        *,
        window: int = WINDOW,
        chunk: int = CHUNK,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        if chunk <= 0 or chunk % mmap.PAGESIZE:
            raise ValueError(f"prefault chunk {chunk} is not a multiple of the page size")
        self._memory: mmap.mmap | None = memory
        self._size = len(memory)
        self._window = window
        self._chunk = chunk
        self._on_stop = on_stop
        self._cond = threading.Condition(threading.Lock())
        self._written = 0
        self._stopped = False
        #: Bytes from the start of the mapping that are faulted in (read by tests).
        self.populated = 0
        self._thread = threading.Thread(target=self._run, name="silo-prefault", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def advance(self, written: int) -> None:
        """The first ``written`` bytes of the mapping have arrived."""
        with self._cond:
            self._written = written
            self._cond.notify()

    def stop(self, *, wait: bool = False) -> None:
        """Tell the thread to leave; with ``wait``, also wait until it has (at most the one
        chunk in progress), so the mapping can be unmapped at once."""
        if not self._stopped:
            with self._cond:
                self._stopped = True
                self._cond.notify()
            if self._on_stop is not None:
                self._on_stop()
                self._on_stop = None
        if wait and self._thread.is_alive():
            self._thread.join(_JOIN_TIMEOUT)

    def _run(self) -> None:
        assert _madvise is not None
        try:
            while True:
                with self._cond:
                    while not self._stopped and self.populated >= self._goal():
                        self._cond.wait()
                    if self._stopped:
                        return
                    end = self._goal()
                n = min(self._chunk, end - self.populated)
                if not self._populate(self.populated, n):
                    return
                self.populated += n
                if self.populated >= self._size:
                    return
        finally:
            self._memory = None

    def _goal(self) -> int:
        """Where the thread stops: ``written + window``, rounded to whole chunks so every
        ``madvise`` starts on a page boundary."""
        goal = -(-(self._written + self._window) // self._chunk) * self._chunk
        return min(self._size, goal)

    def _populate(self, offset: int, n: int) -> bool:
        memory = self._memory
        assert memory is not None and _madvise is not None
        try:
            view = ctypes.c_char.from_buffer(memory)
        except (ValueError, TypeError):
            return False
        try:
            return _madvise(ctypes.addressof(view) + offset, n, _MADV_POPULATE_WRITE) == 0
        finally:
            del view
