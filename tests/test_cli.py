"""The command line: argument and federation-file validation by calling ``silo.cli.main``
directly, and real runs of the launcher and of one process per party."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml

from silo.cli import main

from _cli_support import (
    EXAMPLES,
    copy_federation,
    finish,
    free_ports,
    make_tls_files,
    run_silo,
    start_silo,
    wait_for_files,
    write_federation,
)

GOOD_PROGRAM = """\
async def main(party):
    print(f"{party} ran")
"""

PARTIES = """\
parties:
  alice: {address: "127.0.0.1:{p1}"}
  bob: {address: "127.0.0.1:{p2}"}
"""

# (id, YAML text after "job_name: test\n", extra argv, fragments the message must contain)
BAD_FILES: list[tuple[str, str, list[str], list[str]]] = [
    (
        "malformed",
        "program: prog.py\n  bad: indent\n",
        [],
        ["not valid YAML", "line 3", "mapping values are not allowed"],
    ),
    ("not-a-mapping", None, [], ["expected a mapping with job_name, program, parties"]),
    (
        "unknown-top-key",
        "program: prog.py\nprogramme: x\n" + PARTIES,
        [],
        ["unknown key 'programme'", "did you mean 'program'", "expected one of: job_name"],
    ),
    ("missing-program", PARTIES, [], ["program: missing", "expected a file path"]),
    ("missing-parties", "program: prog.py\n", [], ["parties: missing", "host:port"]),
    (
        "duplicate-key",
        "program: prog.py\nprogram: other.py\n" + PARTIES,
        [],
        ["not valid YAML", "duplicate key 'program'"],
    ),
    (
        "parties-list",
        "program: prog.py\nparties: [alice, bob]\n",
        [],
        ["parties: expected a mapping"],
    ),
    ("parties-empty", "program: prog.py\nparties: {}\n", [], ["parties: expected at least one"]),
    (
        "bad-address",
        'program: prog.py\nparties:\n  alice: {address: "127.0.0.1:{p1}"}\n'
        "  bob: {address: nope}\n",
        [],
        ["parties.bob.address", "expected 'host:port'", "'nope' (str)"],
    ),
    (
        "bad-port",
        'program: prog.py\nparties:\n  alice: {address: "127.0.0.1:70000"}\n',
        [],
        ["parties.alice.address", "a port from 1 to 65535", "'127.0.0.1:70000'"],
    ),
    (
        "missing-address",
        "program: prog.py\nparties:\n  alice: {}\n",
        [],
        ["parties.alice.address: missing", "host:port"],
    ),
    (
        "unknown-party-key",
        'program: prog.py\nparties:\n  alice: {adress: "127.0.0.1:{p1}"}\n',
        [],
        ["parties.alice: unknown key 'adress'", "did you mean 'address'", "address, cert, key"],
    ),
    (
        "same-address",
        'program: prog.py\nparties:\n  alice: {address: "127.0.0.1:{p1}"}\n'
        '  bob: {address: "127.0.0.1:{p1}"}\n',
        [],
        ["parties.bob.address", "expected a distinct address", "alice's"],
    ),
    (
        "party-not-listed",
        "program: prog.py\nparty: carol\n" + PARTIES,
        [],
        ["party: expected one of alice, bob", "'carol'"],
    ),
    (
        "cli-party-not-listed",
        "program: prog.py\n" + PARTIES,
        ["--party", "carol"],
        ["--party: expected one of alice, bob", "'carol'"],
    ),
    (
        "program-file-missing",
        "program: nowhere.py\n" + PARTIES,
        [],
        ["program: expected an existing Python file", "'nowhere.py'"],
    ),
    (
        "program-not-a-name",
        "program: 'not a module!'\n" + PARTIES,
        [],
        ["program: expected a file path ending in .py or 'pkg.module:func'"],
    ),
    (
        "comm-unknown-key",
        "program: prog.py\ncross_silo_comm: {timeout_ms: 10}\n" + PARTIES,
        [],
        ["cross_silo_comm: unknown key 'timeout_ms'", "timeout_in_ms"],
    ),
    (
        "comm-bad-timeout",
        "program: prog.py\ncross_silo_comm: {timeout_in_ms: -5}\n" + PARTIES,
        [],
        ["cross_silo_comm.timeout_in_ms", "expected an integer >= 1", "-5"],
    ),
    (
        "comm-rayfed-key",
        "program: prog.py\ncross_silo_comm: {grpc_retry_policy: {}}\n" + PARTIES,
        [],
        ["cross_silo_comm: unknown key 'grpc_retry_policy'", "retry_policy"],
    ),
    (
        "retry-policy",
        "program: prog.py\ncross_silo_comm: {retry_policy: {max_attempts: 0}}\n" + PARTIES,
        [],
        ["cross_silo_comm.retry_policy.max_attempts", "expected an integer >= 1"],
    ),
    (
        "barrier-not-bool",
        "program: prog.py\nbarrier_on_initializing: 'yes'\n" + PARTIES,
        [],
        ["barrier_on_initializing", "expected true or false", "'yes'"],
    ),
    (
        "tls-without-ca",
        "program: prog.py\ntls: {}\n" + PARTIES,
        [],
        ["tls: expected exactly one of ca_cert", "CA certificate", "got neither"],
    ),
    (
        "tls-without-party-cert",
        "program: prog.py\ntls: {ca_cert: ca.pem}\n" + PARTIES,
        [],
        ["parties.alice.cert: missing", "since tls is set"],
    ),
    (
        "cert-without-tls",
        "program: prog.py\nparties:\n"
        '  alice: {address: "127.0.0.1:{p1}", cert: a.pem, key: a.key}\n',
        [],
        ["parties.alice.cert", "needs tls.ca_cert"],
    ),
    (
        "tls-file-missing",
        "program: prog.py\ntls: {ca_cert: ca.pem}\nparties:\n"
        '  alice: {address: "127.0.0.1:{p1}", cert: a.pem, key: a.key}\n',
        [],
        ["tls.ca_cert: expected an existing file", "ca.pem"],
    ),
    (
        "logging-level",
        "program: prog.py\nlogging: {level: loud}\n" + PARTIES,
        [],
        ["logging.level", "expected one of debug, info", "'loud'"],
    ),
    (
        "remote-without-party",
        'program: prog.py\nallow_plaintext: true\nparties:\n  alice: {address: "127.0.0.1:{p1}"}\n'
        '  bob: {address: "10.1.2.3:12011"}\n',
        [],
        ["party: not set", "bob at 10.1.2.3:12011", "expected --party NAME"],
    ),
    (
        "no-main",
        "program: prog_nomain.py\n" + PARTIES,
        ["--party", "alice"],
        ["program", "define a function 'main'"],
    ),
    (
        "func-missing",
        "program: prog.py:start\n" + PARTIES,
        ["--party", "alice"],
        ["program", "define a function 'start'"],
    ),
    (
        "module-not-importable",
        "program: silo_no_such_pkg.mod:main\n" + PARTIES,
        ["--party", "alice"],
        ["program", "cannot import 'silo_no_such_pkg.mod'"],
    ),
    (
        "syntax-error",
        "program: prog_syntax.py\n" + PARTIES,
        ["--party", "alice"],
        ["program", "syntax error at line 1"],
    ),
]


def _program_files(directory: Path, suffix: str) -> None:
    """Programs named per test: ``main`` imports them in this process, once per name."""
    (directory / f"prog_{suffix}.py").write_text(GOOD_PROGRAM)
    (directory / f"prog_nomain_{suffix}.py").write_text("def other():\n    pass\n")
    (directory / f"prog_syntax_{suffix}.py").write_text("def main(:\n")


@pytest.mark.parametrize(
    ("body", "argv", "fragments"),
    [pytest.param(body, argv, fragments, id=case) for case, body, argv, fragments in BAD_FILES],
)
def test_bad_federation_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    body: str | None,
    argv: list[str],
    fragments: list[str],
) -> None:
    suffix = request.node.callspec.id.replace("-", "_")
    _program_files(tmp_path, suffix)
    p1, p2 = free_ports(2)
    if body is None:
        text = "- just\n- a list\n"
    else:
        text = "job_name: test\n" + body.replace("{p1}", str(p1)).replace("{p2}", str(p2))
        text = text.replace("prog.py", f"prog_{suffix}.py")
        text = text.replace("prog_nomain.py", f"prog_nomain_{suffix}.py")
        text = text.replace("prog_syntax.py", f"prog_syntax_{suffix}.py")
    file = tmp_path / "fed.yaml"
    file.write_text(text)

    code = main(["run", str(file), *argv])

    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(f"silo: {file}: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.yaml"
    assert main(["run", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: cannot read the federation file" in err
    assert "Traceback" not in err


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "empty.yaml"
    file.write_text("")
    assert main(["run", str(file)]) == 2
    assert "empty.yaml: expected a mapping with job_name, program, parties" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], ["run", "check", "example"]),
        (
            ["run", "--help"],
            [
                *("--party", "job_name", "program", "parties", "cross_silo_comm", "tls"),
                *("logging", "exit status", "2 bad configuration", "prefixed"),
                "examples/quickstart.yaml",
            ],
        ),
        (["check", "--help"], ["job_name", "exit status"]),
    ],
)
def test_help(argv: list[str], expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    for fragment in expected:
        assert fragment in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["run"]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage: silo" in capsys.readouterr().err


def test_check_reports_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "prog_check.py").write_text(GOOD_PROGRAM)
    file = write_federation(tmp_path, "prog_check.py", ["alice", "bob"])
    assert main(["check", str(file)]) == 0
    out = capsys.readouterr().out
    assert f"{file}: ok" in out
    assert "every party, one process each" in out


@pytest.mark.parametrize(
    ("command", "who"), [(["run", "--party", "alice"], "party alice"), (["check"], "program")]
)
def test_program_failing_at_import_exits_1_with_its_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], who: str
) -> None:
    name = f"prog_raises_{command[0]}"
    (tmp_path / f"{name}.py").write_text("def helper():\n    return 1 / 0\n\nhelper()\n")
    file = write_federation(tmp_path, f"{name}.py", ["alice", "bob"])
    assert main([command[0], str(file), *command[1:]]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "in helper" in err
    assert f"silo: {who} failed: ZeroDivisionError: division by zero" in err


# ---------------------------------------------------------------------- real processes

FAILING_PROGRAM = """\
import silo

@silo.remote
def explode():
    raise RuntimeError("boom in bob")

async def main(party):
    print(f"{party} started")
    await silo.get(explode.party("bob").remote())
"""

SLEEPING_PROGRAM = """\
import asyncio
from pathlib import Path

async def main(party):
    (Path(__file__).parent / f"{party}.ready").touch()
    await asyncio.sleep(60)
"""


def test_launcher_runs_every_party_and_prefixes_output(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(
        "import sys\n\nasync def main(party):\n"
        "    print(f'{party} out')\n    print(f'{party} err', file=sys.stderr)\n"
    )
    file = write_federation(tmp_path, "prog.py", ["alice", "bob", "carol"])
    done = run_silo("run", str(file))
    assert done.returncode == 0, done
    for party in ("alice", "bob", "carol"):
        assert re.search(rf"^\[{party}\] +{party} out$", done.stdout, re.MULTILINE), done
        assert re.search(rf"^\[{party}\] +{party} err$", done.stderr, re.MULTILINE), done


def test_launcher_exits_1_when_a_party_fails(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(FAILING_PROGRAM)
    file = write_federation(
        tmp_path, "prog.py", ["alice", "bob"], cross_silo_comm={"expose_error_trace": True}
    )
    done = run_silo("run", str(file))
    assert done.returncode == 1, done
    assert "silo: party bob failed: RuntimeError: boom in bob" in done.stderr, done
    assert "silo: party alice failed: FedRemoteError occurred at bob" in done.stderr, done
    summary = done.stderr.splitlines()[-3:]
    assert summary[0] == "silo: 2 of 2 parties failed; bob failed first: RuntimeError: boom in bob"
    assert summary[1].split() == [
        "silo:",
        "alice",
        "exit",
        "1",
        *"FedRemoteError occurred at bob: RuntimeError: boom in bob (in explode, call 1)".split(),
    ]
    assert summary[2].split() == ["silo:", "bob", "exit", "1", "RuntimeError:", "boom", "in", "bob"]
    lines = done.stderr.splitlines()
    bob = [line for line in lines if line.startswith("[bob]")]
    alice = [line for line in lines if line.startswith("[alice]")]
    assert sum("Traceback (most recent call last)" in line for line in bob) == 1, done
    assert any("in explode" in line for line in bob), done
    assert not any("/silo/" in line or "asyncio" in line for line in bob if "File " in line), (
        "the origin party's traceback shows the user's frames, not silo's or asyncio's"
    )
    assert not any("Traceback" in line for line in alice), (
        "a peer's failure is one line, not a local traceback"
    )


def test_launcher_exits_2_when_the_program_is_bad(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("def other():\n    pass\n")
    file = write_federation(tmp_path, "prog.py", ["alice", "bob"])
    done = run_silo("run", str(file), timeout=30)
    assert done.returncode == 2, done
    assert "define a function 'main'" in done.stderr, done
    assert "Traceback" not in done.stderr, done


def test_launcher_forwards_ctrl_c(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(SLEEPING_PROGRAM)
    file = write_federation(tmp_path, "prog.py", ["alice", "bob"])
    proc = start_silo("run", str(file))
    wait_for_files([tmp_path / "alice.ready", tmp_path / "bob.ready"])
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    done = finish(proc, timeout=30)
    assert done.returncode == 128 + signal.SIGINT, done
    assert time.monotonic() - started < 20, "the programs sleep 60 s: the signal stopped them"
    assert "silo: received SIGINT: stopping every party" in done.stderr, done
    for party in ("alice", "bob"):
        assert re.search(rf"^\[{party}\] .*received SIGINT", done.stderr, re.MULTILINE), done


def test_one_process_per_party(tmp_path: Path) -> None:
    file = copy_federation(EXAMPLES / "quickstart.yaml", tmp_path)
    procs = {p: start_silo("run", str(file), "--party", p) for p in ("alice", "bob")}
    results = {p: finish(proc) for p, proc in procs.items()}
    for party, done in results.items():
        assert done.returncode == 0, done
        assert f"{party}: 5" in done.stdout, done
        assert "[" not in done.stdout, "no launcher prefix when a party is chosen"


def test_party_key_in_file_runs_one_party(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(GOOD_PROGRAM)
    file = write_federation(tmp_path, "prog.py", ["alice"], party="alice")
    done = run_silo("run", str(file), timeout=30)
    assert done.returncode == 0, done
    assert done.stdout == "alice ran\n"


WAITING_PROGRAM = """\
import asyncio
from pathlib import Path

import silo

@silo.remote
async def slow():
    await asyncio.sleep(60)

async def main(party):
    ref = slow.party("bob").remote()
    (Path(__file__).parent / f"{party}.ready").touch()
    await silo.get(ref)
"""


def test_sigterm_stops_a_party_and_its_peer_learns(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(WAITING_PROGRAM)
    file = write_federation(tmp_path, "prog.py", ["alice", "bob"])
    procs = {p: start_silo("run", str(file), "--party", p) for p in ("alice", "bob")}
    wait_for_files([tmp_path / "alice.ready", tmp_path / "bob.ready"])
    procs["bob"].send_signal(signal.SIGTERM)
    bob, alice = finish(procs["bob"], 20), finish(procs["alice"], 20)
    assert bob.returncode == 128 + signal.SIGTERM, bob
    assert "silo: party bob stopped with exit status 143" in bob.stderr, bob
    assert alice.returncode == 1, alice
    assert "silo: party alice failed: FedRemoteError occurred at bob" in alice.stderr, alice


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_launcher_with_tls_paths_relative_to_the_file(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_tls_files(certs, ["alice", "bob"])
    file = copy_federation(EXAMPLES / "quickstart.yaml", tmp_path, tls={"ca_cert": "certs/ca.pem"})
    fed = yaml.safe_load(file.read_text())
    for party, entry in fed["parties"].items():
        entry.update(cert=f"certs/{party}.pem", key=f"certs/{party}.key")
    file.write_text(yaml.safe_dump(fed))
    done = run_silo("run", str(file), cwd=certs)
    assert done.returncode == 0, done
    assert re.search(r"^\[alice\] +alice: 5$", done.stdout, re.MULTILINE), done
    assert re.search(r"^\[bob\] +bob: 5$", done.stdout, re.MULTILINE), done


def test_version_through_python_m_silo() -> None:
    done = run_silo("--version", timeout=30)
    assert done.returncode == 0, done
    assert done.stdout.startswith("silo ")
