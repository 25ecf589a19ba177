"""The runtime's own tasks: started, kept until done, their failures reported; never fire and
forget.

:class:`TaskSupervisor` keeps each task in one of four sets until it ends: calls (this party's
remote calls), sends (pushes to peers), actor tasks, and auxiliary tasks (the user's async
``sending_failure_handler``, which the teardown lets finish). A task that fails is handed to
``on_failure`` while it is still in its set, so whoever handles it can ask :meth:`owns`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["TaskSupervisor"]

Task = asyncio.Task[Any]


class TaskSupervisor:
    """Owns a runtime's tasks. ``loop`` gives the loop to start them on."""

    def __init__(
        self,
        loop: Callable[[], asyncio.AbstractEventLoop],
        on_failure: Callable[[Task, BaseException], None],
    ) -> None:
        self._loop = loop
        self._on_failure = on_failure
        self.calls: set[Task] = set()
        self.sends: set[Task] = set()
        self.actors: set[Task] = set()
        self.aux: set[Task] = set()

    def spawn(
        self,
        coro: Coroutine[Any, Any, Any] | Awaitable[Any],
        name: str,
        group: set[Task] | None = None,
    ) -> Task:
        """Start ``coro`` as a task kept in ``group`` (default: the calls) until it is done."""
        tasks = self.calls if group is None else group
        task: Task = self._loop().create_task(coro, name=name)  # type: ignore[arg-type]
        tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: Task) -> None:
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._on_failure(task, exc)
        for tasks in (self.calls, self.sends, self.actors, self.aux):
            tasks.discard(task)

    def owns(self, task_or_future: object) -> bool:
        """Whether ``task_or_future`` is one of these tasks, still running or just ended."""
        return any(
            task_or_future in tasks for tasks in (self.calls, self.sends, self.actors, self.aux)
        )
