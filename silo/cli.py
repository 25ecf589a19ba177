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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .api import call_main, init
from .config import TLSConfig
from .errors import ConfigError, FedRemoteError, SiloError
from .federation import Federation, is_local_host, load_federation
from .launcher import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, GRACE_S, Launcher
from .loop import run as run_loop
from .output import tee_output
from .program import load_program
from .progress import STATUS_ENV, reporting
from .runtime import Runtime
from .shutdown import ending_error
from .tracebacks import format_user_traceback, headline, last_user_frame, was_reported

__all__ = ["main", "main_entry"]


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
  slow_get_warning_s: 30            optional; a get waiting longer logs what it waits for,
                                    once per such interval
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
others learn it through silo and stop; any still running {GRACE_S:.0f} s later are
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
    run.add_argument(
        "--log-dir",
        metavar="DIR",
        type=Path,
        help="also write each party's output to DIR/<party>.log (created if missing)",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no live status line per party (shown only on a terminal, when starting every party)",
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
        return _run(args.file, args.party, args.log_dir, progress=not args.no_progress)
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


def _run(
    file: str, party: str | None, log_dir: Path | None = None, *, progress: bool = True
) -> int:
    fed = load_federation(file)
    fed.check_plaintext()
    chosen = fed.check_party(party) if party is not None else fed.party
    if chosen is not None:
        return _run_party(fed, chosen, log_dir)
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
    if log_dir is not None:
        _make_log_dir(log_dir)
    return asyncio.run(Launcher(fed, log_dir=log_dir, progress=progress).run())


def _make_log_dir(log_dir: Path) -> None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _Exit(
            EXIT_CONFIG, f"--log-dir: cannot create {str(log_dir)!r}: {exc.strerror}"
        ) from None


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


def _run_party(fed: Federation, party: str, log_dir: Path | None = None) -> int:
    """Run ``party`` in this process; report a failure on stderr and return the exit status.

    With ``log_dir``, everything the party prints also goes to ``log_dir/<party>.log``.
    """
    if log_dir is None:
        return _run_party_here(fed, party)
    _make_log_dir(log_dir)
    with tee_output(log_dir / f"{party}.log"):
        return _run_party_here(fed, party)


def _run_party_here(fed: Federation, party: str) -> int:
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
    summary = headline(exc)
    if isinstance(exc, SiloError):
        # silo's own errors say what happened in their message: one line, and where the
        # program was if it was in the program.
        where = last_user_frame(exc)
        if where is not None and not isinstance(exc, FedRemoteError):
            summary += f" (at {where})"
    elif not was_reported(exc):
        print(format_user_traceback(exc), end="", file=sys.stderr)
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
        config=fed.config_for(party),
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
            status_file = os.environ.get(STATUS_ENV)
            if status_file:
                await stack.enter_async_context(reporting(runtime, status_file))
            await call_main(entry, party)
    except (Exception, asyncio.CancelledError) as exc:
        if isinstance(exc, _Exit):
            raise
        request = session.core.shutdown_request if session.core is not None else None
        ending = ending_error(request, program_raised=True)
        if ending is not None:
            raise ending from None
        raise
    assert session.core is not None
    ending = ending_error(session.core.shutdown_request, program_raised=False)
    if ending is not None:
        raise ending


# ---------------------------------------------------------------------- every party
