"""The launcher's end-of-run summary and ``--log-dir``: which party failed first, log files."""

from __future__ import annotations

from pathlib import Path

import pytest

from silo.launcher import first_failure, summary_lines

from _cli_support import run_silo, write_federation

FAILING = """\
import silo

@silo.remote
def explode():
    raise RuntimeError("boom in bob")

async def main(party):
    print(f"{party} started")
    await silo.get(explode.party("bob").remote())
"""


@pytest.mark.parametrize(
    ("codes", "how", "order", "expected"),
    [
        # bob's own error; alice learned it from bob and happened to stop first
        (
            {"alice": 1, "bob": 1},
            {"alice": "FedRemoteError occurred at bob", "bob": "ValueError: x"},
            ["alice", "bob"],
            "bob",
        ),
        # bob was killed (no line): the FedRemoteErrors of the others name it
        (
            {"alice": 1, "bob": -9, "carol": 1},
            {
                "alice": "FedRemoteError occurred at bob: the connection was lost",
                "carol": "FedRemoteError occurred at bob caused by KeyError: 'k'",
            },
            ["bob", "alice", "carol"],
            "bob",
        ),
        # two parties failed with their own errors: the first to stop
        (
            {"alice": 1, "bob": 1},
            {"alice": "KeyError: 'a'", "bob": "ValueError: b"},
            ["bob", "alice"],
            "bob",
        ),
        # nobody said anything: the first to stop with a non-zero status
        ({"alice": 0, "bob": 143}, {}, ["bob", "alice"], "bob"),
        ({"alice": 0, "bob": 0}, {}, ["alice", "bob"], None),
    ],
)
def test_first_failure(
    codes: dict[str, int | None], how: dict[str, str], order: list[str], expected: str | None
) -> None:
    assert first_failure(codes, how, order) == expected


def test_summary_names_every_party_and_its_status() -> None:
    lines = summary_lines(
        {"alice": 1, "bob": -9},
        {"alice": "FedRemoteError occurred at bob: lost"},
        ["bob", "alice"],
    )
    assert lines == [
        "silo: 2 of 2 parties failed; bob failed first",
        "silo:   alice  exit 1  FedRemoteError occurred at bob: lost",
        "silo:   bob    exit -9 (killed by SIGKILL)",
    ]


def test_log_dir_gets_one_file_per_party(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(FAILING)
    file = write_federation(tmp_path, "prog.py", ["alice", "bob"])
    logs = tmp_path / "logs" / "run1"
    done = run_silo("run", str(file), "--log-dir", str(logs))
    assert done.returncode == 1, done
    assert sorted(p.name for p in logs.iterdir()) == ["alice.log", "bob.log"]
    bob = (logs / "bob.log").read_text()
    alice = (logs / "alice.log").read_text()
    assert "bob started" in bob and not any(line.startswith("[bob]") for line in bob.splitlines())
    assert "RuntimeError: boom in bob" in bob and "Traceback" in bob
    assert "silo: party bob failed: RuntimeError: boom in bob" in bob
    assert "alice started" in alice and "Traceback" not in alice
    assert "silo: party alice failed: FedRemoteError occurred at bob" in alice


def test_log_dir_for_one_party(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("def main(party):\n    print(f'hello from {party}')\n")
    file = write_federation(tmp_path, "prog.py", ["alice"])
    done = run_silo("run", str(file), "--party", "alice", "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 0, done
    assert "hello from alice" in done.stdout
    assert "hello from alice" in (tmp_path / "logs" / "alice.log").read_text()


def test_log_dir_that_cannot_be_made_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text("def main():\n    pass\n")
    (tmp_path / "taken").write_text("a file, not a folder")
    file = write_federation(tmp_path, "prog.py", ["alice", "bob"])
    done = run_silo("run", str(file), "--log-dir", str(tmp_path / "taken"))
    assert done.returncode == 2, done
    assert "--log-dir: cannot create" in done.stderr and "taken" in done.stderr


CASCADE = """\
import silo

@silo.remote
def train(x):
    raise ValueError("boom")

@silo.remote
def combine(a, b):
    return a + b

async def main(party):
    print(f"{party} started")
    a = train.party("alice").remote(1)
    b = combine.party("bob").remote(a, 2)
    c = combine.party("carol").remote(b, 3)
    return await silo.get(c)
"""


def test_a_three_party_failure_reads_once(tmp_path: Path) -> None:
    """The origin prints the user's traceback once; every other party prints one line; no
    party repeats a peer's traceback or logs its abort at warning level or above."""
    (tmp_path / "prog.py").write_text(CASCADE)
    file = write_federation(
        tmp_path, "prog.py", ["alice", "bob", "carol"], cross_silo_comm={"expose_error_trace": True}
    )
    done = run_silo("run", str(file))
    assert done.returncode == 1, done
    lines = (done.stdout + done.stderr).splitlines()

    def of(party: str) -> list[str]:
        return [line for line in lines if line.startswith(f"[{party}]")]

    alice, bob, carol = of("alice"), of("bob"), of("carol")
    assert sum("Traceback (most recent call last)" in line for line in alice) == 1, done
    assert sum('raise ValueError("boom")' in line for line in alice) == 1, done
    for party, own in (("bob", bob), ("carol", carol)):
        assert not any("Traceback" in line or "raise ValueError" in line for line in own), done
        noisy = [line for line in own if " WARNING " in line or " ERROR " in line]
        assert noisy == [], noisy
        failure = [line for line in own if "FedRemoteError" in line]
        assert len(failure) == 1, failure
        assert failure[0].endswith(
            f"silo: party {party} failed: FedRemoteError occurred at alice: "
            "ValueError: boom (in train, call 1)"
        ), failure
    summary = done.stderr.splitlines()[-4:]
    assert summary[0].startswith("silo: 3 of 3 parties failed; alice failed first"), summary
