"""The command line: ``python -m silo run FILE.yaml [--party NAME]``, ``silo check FILE.yaml`` and
``silo certs FILE.yaml --out DIR`` (:mod:`silo.certs`).

:func:`main` parses ``argv`` and returns the exit status instead of exiting, so tests call it.
With a party chosen, ``run`` runs that party in this process; without one, and with every
address on this machine, it starts one child process per party (:class:`_Launcher`) and
prefixes their output with the party's name.

Exit status: 0 success, 1 the program or a peer failed, 2 bad configuration (the message names
the file, the key and what was expected, without a traceback), 128+N stopped by signal N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from . import __version__
from .api import call_main, init
from .config import TLSConfig
from .errors import ConfigError, FedRemoteError
from .federation import Federation, is_local_host, load_federation, load_program
from .loop import run as run_loop
from .runtime import Runtime
from .shutdown import Reason

__all__ = ["main", "main_entry"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: After a child fails (or a signal was forwarded), the others get this long to stop by
#: themselves (silo's error broadcast normally stops them at once) before SIGTERM, then SIGKILL.
_GRACE_S = 10.0
_KILL_AFTER_S = 5.0

_YAML_HELP = """\
federation file (YAML):
  job_name: quickstart              required; every party must use the same name
  program: quickstart.py            required; a .py file relative to the YAML (optionally
                                    file.py:func), or pkg.module[:func]; default func: main,
                                    async or plain, called with the party name if it takes
                                    one parameter
  parties:                          required; name -> {address: "host:port"}
    alice: {address: "127.0.0.1:12010"}
    bob: {address: "127.0.0.1:12011"}
  party: alice                      optional; the party to run (--party overrides)
  cross_silo_comm: {timeout_in_ms: 60000, expose_error_trace: true}
                                    optional; RayFed's key names, as in silo.init's config
  barrier_on_initializing: false    optional; wait until every peer answers
  tls: {ca_cert: ca.pem}            optional; then each party needs cert: and key: paths
                                    (relative to the YAML) next to its address; or
                                    tls: {peer_fingerprints: {alice: "sha256:..."}}
                                    (`silo certs` makes the files and prints this section)
  allow_plaintext: false            optional; without tls, every address must be loopback
                                    unless this is true
  logging: {level: info}            optional; debug, info, warning, error or critical

exit status:
  0 success, 1 the program or a peer failed, 2 bad configuration, 128+N stopped by signal N
"""

_RUN_HELP = f"""\
Run a silo program described by a federation file.

With --party (or party: in the file) this process runs that one party. Without a party,
if every address is on this machine (127.x, localhost, ::1), each party is started as its
own process (python -m silo run FILE --party NAME); their output lines are prefixed with
[name], Ctrl-C and SIGTERM are forwarded to all of them, and the launcher exits non-zero
if any party failed (2 if one had a configuration error, else 1). If a party fails, the
others learn it through silo and stop; any still running {_GRACE_S:.0f} s later are
terminated. With remote addresses and no party, pass --party.

{_YAML_HELP}
examples:
  python -m silo run examples/quickstart.yaml              every party, on this machine
  python -m silo run party.yaml --party alice              one party (one per machine)
"""

_CERTS_HELP = """\
Make TLS keys and certificates for the parties of a federation file, then print the tls
section to put in it. Every certificate names its party (subjectAltName DNS), which is how
parties know who they talk to. An existing key is never overwritten: it is reused.

  CA mode (default): DIR/ca.key, DIR/ca.pem, and per party DIR/NAME.key, DIR/NAME.pem signed
  by the CA. Give each party its own key and certificate and ca.pem; keep ca.key secret.
  --self-signed: per party DIR/NAME.key and a self-signed DIR/NAME.pem; prints the
  fingerprints the parties exchange (tls: {peer_fingerprints: ...}). Each organisation can
  make its own with --party NAME, so no key ever leaves its owner.

exit status: 0 success, 2 bad configuration or a file that cannot be reused

examples:
  python -m silo certs examples/quickstart_tls.yaml --out examples/certs
  python -m silo certs federation.yaml --out certs --self-signed --party alice
"""

_CHECK_HELP = f"""\
Validate a federation file and import its program (its top-level code runs), without
starting any party. Prints what `run` would do.

{_YAML_HELP}"""


class _Exit(Exception):
    """Stop with ``code`` after printing ``message`` (no traceback)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``silo`` (``python -m silo``)."""
    parser = argparse.ArgumentParser(
        prog="silo",
        description="silo: run cross-silo (multi-party) Python programs, no Ray.",
        epilog="Run 'silo COMMAND --help' for the federation file format and exit codes.\n"
        "example: python -m silo run examples/quickstart.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"silo {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a program: one party, or every party on this machine",
        description=_RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("file", metavar="FILE.yaml", help="the federation file")
    run.add_argument(
        "--party", metavar="NAME", help="run only this party (overrides party: in the file)"
    )
    check = commands.add_parser(
        "check",
        help="validate a federation file and its program without running it",
        description=_CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE.yaml", help="the federation file")
    certs = commands.add_parser(
        "certs",
        help="make TLS keys and certificates for a federation file's parties",
        description=_CERTS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    certs.add_argument("file", metavar="FILE.yaml", help="the federation file")
    certs.add_argument("--out", metavar="DIR", required=True, help="where to write the files")
    certs.add_argument(
        "--self-signed",
        action="store_true",
        help="one self-signed certificate per party, trusted by fingerprint (no CA)",
    )
    certs.add_argument(
        "--party",
        metavar="NAME",
        action="append",
        help="only this party's files (repeatable); default: every party",
    )
    certs.add_argument(
        "--days", type=int, default=365, help="validity of the certificates (default 365)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Never raises for a usage or configuration error (exit status 2, message on stderr) nor for
    a failed program (status 1); ``--help`` and ``--version`` return 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    try:
        if args.command == "check":
            return _check(args.file)
        if args.command == "certs":
            from .certs import run_certs

            return run_certs(
                args.file,
                args.out,
                self_signed=args.self_signed,
                parties=args.party,
                days=args.days,
            )
        return _run(args.file, args.party)
    except _Exit as exc:
        print(f"silo: {exc}", file=sys.stderr)
        return exc.code
    except _ProgramFailed as exc:
        return _report(exc.who, exc.error)
    except ConfigError as exc:
        print(f"silo: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def main_entry() -> None:
    """The ``silo`` console script."""
    sys.exit(main())


def _check(file: str) -> int:
    fed = load_federation(file)
    fed.check_plaintext()
    for party in [fed.party] if fed.party else list(fed.parties):
        fed.tls_for(party)
    entry = _load_entry(fed, "program" if fed.party is None else f"party {fed.party}")
    mode = (
        f"party {fed.party}"
        if fed.party
        else "every party, one process each"
        if fed.all_local
        else "one party per machine (pass --party)"
    )
    print(f"{fed.source}: ok")
    print(f"  job_name: {fed.job_name}")
    print(f"  program:  {fed.program} -> {getattr(entry, '__qualname__', entry)!s}")
    for name, spec in fed.parties.items():
        print(f"  party {name}: {spec.address}{' (TLS)' if spec.cert else ''}")
    print(f"  run would start: {mode}")
    return EXIT_OK


def _run(file: str, party: str | None) -> int:
    fed = load_federation(file)
    fed.check_plaintext()
    chosen = fed.check_party(party) if party is not None else fed.party
    if chosen is not None:
        return _run_party(fed, chosen)
    if not fed.all_local:
        remote = ", ".join(
            f"{name} at {spec.address}"
            for name, spec in fed.parties.items()
            if not is_local_host(spec.address.host)
        )
        raise _Exit(
            EXIT_CONFIG,
            f"{fed.source}: party: not set, and not every address is on this machine "
            f"({remote}); expected --party NAME (one of {', '.join(fed.parties)}) "
            f"or party: in the file",
        )
    for name in fed.parties:
        fed.tls_for(name)
    return asyncio.run(_Launcher(fed).run())


# ---------------------------------------------------------------------- one party


def _load_entry(fed: Federation, who: str) -> Callable[..., Any]:
    try:
        return load_program(fed)
    except ConfigError:
        raise
    except BaseException as exc:
        raise _ProgramFailed(who, exc) from exc


class _ProgramFailed(Exception):
    """The program's own top-level code raised while it was imported (by ``who``)."""

    def __init__(self, who: str, error: BaseException) -> None:
        super().__init__(who, error)
        self.who = who
        self.error = error


def _run_party(fed: Federation, party: str) -> int:
    """Run ``party`` in this process; report a failure on stderr and return the exit status."""
    tls = fed.tls_for(party)
    entry = _load_entry(fed, f"party {party}")
    try:
        run_loop(_serve(fed, party, entry, tls))
    except (_Exit, ConfigError):
        raise
    except BaseException as exc:
        return _report(f"party {party}", exc)
    return EXIT_OK


def _report(who: str, exc: BaseException) -> int:
    """Print why ``who`` ("party alice") stopped; return the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"silo: {who} interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    if isinstance(exc, SystemExit):
        code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
        print(f"silo: {who} stopped with exit status {code}", file=sys.stderr)
        return code
    if not isinstance(exc, FedRemoteError):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    headline = str(exc).splitlines()[0] if str(exc) else ""
    summary = headline if isinstance(exc, FedRemoteError) else f"{type(exc).__name__}: {headline}"
    print(f"silo: {who} failed: {summary.rstrip(': ')}", file=sys.stderr)
    return EXIT_FAILED


async def _serve(
    fed: Federation, party: str, entry: Callable[..., Any], tls: TLSConfig | None
) -> None:
    """Start the runtime, run the program in it, and raise whatever made this party fail."""
    session = init(
        addresses=fed.addresses,
        party=party,
        job_name=fed.job_name,
        config=fed.config,
        tls_config=tls,
        logging_level=fed.logging_level,
    )
    runtime: Runtime | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                runtime = await stack.enter_async_context(session)
            except ConfigError as exc:
                raise _Exit(EXIT_CONFIG, f"{fed.source}: {exc}") from None
            await call_main(entry, party)
    except (Exception, asyncio.CancelledError) as exc:
        if isinstance(exc, _Exit):
            raise
        _raise_if_signalled(runtime)
        raise
    assert runtime is not None
    request = runtime.shutdown_request
    if request is not None and request.reason.is_error and request.error is not None:
        raise request.error


def _raise_if_signalled(runtime: Runtime | None) -> None:
    """After SIGINT/SIGTERM, raise what the signal means (``KeyboardInterrupt``, ``SystemExit``)
    rather than whatever the interrupted program ran into (a failed get, a cancellation)."""
    request = runtime.shutdown_request if runtime is not None else None
    if request is not None and request.reason is Reason.SIGNAL and request.error is not None:
        raise request.error from None


# ---------------------------------------------------------------------- every party


class _Launcher:
    """Starts one ``python -m silo run FILE --party NAME`` per party and waits for all of them."""

    def __init__(self, fed: Federation) -> None:
        self.fed = fed
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.width = max(len(name) for name in fed.parties)
        self.signalled: signal.Signals | None = None
        self.escalation: asyncio.Task[None] | None = None

    async def run(self) -> int:
        """Run every party; return 0, 1 (a party failed), 2 (configuration) or 128+signal."""
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._forward, sig)
        pumps: list[asyncio.Task[None]] = []
        try:
            for name in self.fed.parties:
                proc = await self._spawn(name)
                self.procs[name] = proc
                prefix = f"[{name}]".ljust(self.width + 2) + " "
                assert proc.stdout is not None and proc.stderr is not None
                pumps.append(asyncio.ensure_future(_pump(proc.stdout, sys.stdout, prefix)))
                pumps.append(asyncio.ensure_future(_pump(proc.stderr, sys.stderr, prefix)))
            waits = {asyncio.ensure_future(p.wait()): n for n, p in self.procs.items()}
            pending = set(waits)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(task.result() != 0 for task in done) and pending:
                    self._escalate_later()
            await asyncio.gather(*pumps)
        finally:
            for sig in _SIGNALS:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)
            self._signal_all(signal.SIGKILL)
            if self.escalation is not None:
                self.escalation.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.escalation
            for pump in pumps:
                pump.cancel()
        return self._summary()

    async def _spawn(self, name: str) -> asyncio.subprocess.Process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "silo",
            "run",
            self.fed.source,
            "--party",
            name,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=os.name == "posix",
        )

    def _forward(self, sig: signal.Signals) -> None:
        if self.signalled is not None:
            print("silo: second signal: killing every party", file=sys.stderr)
            self._signal_all(signal.SIGKILL)
            return
        self.signalled = sig
        print(f"silo: received {sig.name}: stopping every party", file=sys.stderr)
        self._signal_all(sig)
        self._escalate_later(_KILL_AFTER_S)

    def _signal_all(self, sig: signal.Signals) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    def _escalate_later(self, grace: float = _GRACE_S) -> None:
        if self.escalation is None:
            self.escalation = asyncio.ensure_future(self._escalate(grace))

    async def _escalate(self, grace: float) -> None:
        await asyncio.sleep(grace)
        running = [n for n, p in self.procs.items() if p.returncode is None]
        print(
            f"silo: {', '.join(running)} still running after {grace:.0f} s: terminating",
            file=sys.stderr,
        )
        self._signal_all(signal.SIGTERM)
        await asyncio.sleep(_KILL_AFTER_S)
        self._signal_all(signal.SIGKILL)

    def _summary(self) -> int:
        codes = {name: proc.returncode for name, proc in self.procs.items()}
        failed = {name: code for name, code in codes.items() if code != 0}
        if self.signalled is not None:
            return 128 + int(self.signalled)
        if not failed:
            return EXIT_OK
        detail = ", ".join(f"{name} (exit {_describe_code(code)})" for name, code in failed.items())
        print(f"silo: {len(failed)} of {len(codes)} parties failed: {detail}", file=sys.stderr)
        return EXIT_CONFIG if EXIT_CONFIG in failed.values() else EXIT_FAILED


def _describe_code(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return str(code)


async def _pump(stream: asyncio.StreamReader, out: TextIO, prefix: str) -> None:
    """Copy ``stream`` to ``out`` line by line, each line prefixed; no line length limit."""
    pending = b""
    while chunk := await stream.read(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            out.write(prefix + line.decode("utf-8", "replace").rstrip("\r") + "\n")
        out.flush()
    if pending:
        out.write(prefix + pending.decode("utf-8", "replace") + "\n")
        out.flush()
