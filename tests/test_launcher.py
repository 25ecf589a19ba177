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
