"""``silo.simulate``: every party of a program in this process, on the running loop.

By default the parties are joined by the in-memory transport (:mod:`silo.transport.memory`): no
sockets, frames delivered in a deterministic order, and a fault plan (:mod:`silo.faults`) to test
the program's failure handling. ``transport="tcp"`` gives each party a real listener on a free
loopback port instead, so frames cross the loopback as between processes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

from . import context
from .api import _Init, _start, call_main
from .errors import FedRemoteError, PeerUnavailableError
from .faults import Kill, Killed, check_plan
from .output import party_prefixed_stdout
from .runtime import Runtime
from .shutdown import Reason
from .transport.hub import Hub

__all__ = ["TRANSPORTS", "simulate"]

#: The values of ``simulate(transport=...)``.
TRANSPORTS = ("memory", "tcp")

_INIT_OPTIONS = ("job_name", "config", "tls_config", "sending_failure_handler", "logging_level")


def _bind_free_port() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _check_names(parties: Iterable[str]) -> list[str]:
    names = list(parties)
    if (
        not names
        or len(set(names)) != len(names)
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ValueError(f"parties: expected distinct non-empty names, got {names!r}")
    return names


def _stopper(runtime: Runtime, task: asyncio.Task[Any], reason: str) -> Callable[[], None]:
    """What a kill does to its party's program: its runtime stops (quietly: nothing can leave
    it any more) and its task is cancelled."""

    def stop() -> None:
        error = PeerUnavailableError(runtime.party, reason)
        runtime.request_shutdown(Reason.REMOTE_ERROR, error, reason)
        task.cancel()

    return stop


async def simulate(
    main: Callable[..., Any],
    parties: Iterable[str],
    *,
    transport: str = "memory",
    faults: Iterable[object] = (),
    **init_kwargs: Any,
) -> dict[str, Any]:
    """Run ``main`` once per party, concurrently on this loop, each with its own runtime.

    ``transport``: ``"memory"`` (default) joins the parties in memory, deterministically, and
    carries out ``faults`` (made by :mod:`silo.faults`); ``"tcp"`` gives each a free loopback
    port, and frames really cross the loopback. ``init_kwargs`` are those of ``silo.init`` but
    ``addresses`` and ``party`` (``tls_config`` only with ``"tcp"``). While it runs, each line a
    party prints is prefixed with ``[party] ``, as ``silo run`` does for separate processes.

    Returns ``{party: result}``, with a :class:`~silo.faults.Killed` for a party a kill fault
    stopped. If a party fails, raises the error of the party where the failure began (the
    others' are usually ``FedRemoteError``; a party a fault froze comes last). Raises
    ``ValueError`` for bad parties, an unknown ``transport``, faults with ``"tcp"`` or a bad
    fault plan (see :func:`silo.faults.check_plan`), ``TypeError`` for unknown arguments.
    """
    names = _check_names(parties)
    if transport not in TRANSPORTS:
        raise ValueError(f"transport: expected one of {list(TRANSPORTS)}, got {transport!r}")
    plan = check_plan(faults, names)
    if plan and transport != "memory":
        raise ValueError(
            f"faults are carried out by the in-memory transport; "
            f"transport={transport!r} cannot inject them"
        )
    for key in ("addresses", "party"):
        if key in init_kwargs:
            raise TypeError(f"simulate chooses {key!r} itself; do not pass it")
    unknown = set(init_kwargs) - set(_INIT_OPTIONS)
    if unknown:
        raise TypeError(f"simulate got unexpected keyword arguments: {sorted(unknown)}")
    options: dict[str, Any] = {key: None for key in _INIT_OPTIONS}
    options["logging_level"] = "warning"
    options.update(init_kwargs)
    hub: Hub | None = None
    socks: dict[str, socket.socket] = {}
    if transport == "memory":
        if options["tls_config"] is not None:
            raise ValueError(
                "tls_config: the in-memory transport has no sockets to secure; "
                "pass transport='tcp' to simulate with TLS"
            )
        hub = Hub(names, plan)
        # Never bound: the addresses only name the parties (and pass the loopback check).
        addresses = {name: f"127.0.0.1:{i + 1}" for i, name in enumerate(names)}
    else:
        socks = {name: _bind_free_port() for name in names}
        addresses = {name: f"127.0.0.1:{s.getsockname()[1]}" for name, s in socks.items()}

    async def run(name: str) -> Any:
        factory = hub.transport if hub is not None else None
        init: _Init[Runtime] = _Init(
            lambda: _start(
                addresses, name, sock=socks.get(name), transport_factory=factory, **options
            )
        )
        started: list[Runtime] = []
        try:
            async with init as runtime:
                started.append(runtime)
                if hub is not None:
                    reason = f"{name} was killed by the fault plan"
                    task = asyncio.current_task()
                    assert task is not None
                    hub.on_kill(name, _stopper(runtime, task, reason))
                return await call_main(main, name)
        except asyncio.CancelledError:
            if hub is None or name not in hub.killed:
                raise
        for runtime in started:
            # The kill began its teardown; nothing of it can reach the other parties.
            await runtime.shutdown()
        after = next(f.after_frames for f in plan if isinstance(f, Kill) and f.party == name)
        return Killed(name, after)

    try:
        with party_prefixed_stdout(context.current_party_name):
            tasks = [asyncio.ensure_future(run(name)) for name in names]
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sock in socks.values():
            sock.close()
    frozen = hub.frozen if hub is not None else set()
    ranked = sorted(zip(names, outcomes, strict=True), key=lambda pair: pair[0] in frozen)
    failures = [o for _, o in ranked if isinstance(o, BaseException)]
    if failures:
        origins = [f for f in failures if not isinstance(f, FedRemoteError)]
        raise (origins or failures)[0]
    return dict(zip(names, outcomes, strict=True))
