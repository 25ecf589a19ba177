"""Every example federation runs through the launcher (one process per party) and does what its
docstring says. Each YAML is copied to ``tmp_path`` with free ports and an absolute program."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from _cli_support import EXAMPLES, Finished, copy_federation, run_silo, silo_env

EXAMPLE_FILES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def _run_example(name: str, tmp_path: Path) -> Finished:
    file = copy_federation(EXAMPLES / name, tmp_path)
    return run_silo("run", str(file), timeout=90)


def _numbers(pattern: str, text: str) -> list[float]:
    return [float(m) for m in re.findall(pattern, text)]


def test_every_example_is_covered() -> None:
    assert EXAMPLE_FILES == [
        "error_handling.yaml",
        "fed_avg.yaml",
        "quickstart.yaml",
        "quickstart_tls.yaml",
        "split_learning.yaml",
    ]


def test_quickstart(tmp_path: Path) -> None:
    done = _run_example("quickstart.yaml", tmp_path)
    assert done.returncode == 0, done
    assert re.search(r"^\[alice\] +alice: 5$", done.stdout, re.MULTILINE), done
    assert re.search(r"^\[bob\] +bob: 5$", done.stdout, re.MULTILINE), done


def test_fed_avg_accuracy_rises(tmp_path: Path) -> None:
    done = _run_example("fed_avg.yaml", tmp_path)
    assert done.returncode == 0, done
    accuracy = _numbers(r"\[alice\] +round \d+: accuracy ([0-9.]+)", done.stdout)
    assert len(accuracy) == 8, done
    assert accuracy == sorted(accuracy), f"accuracy fell in some round: {accuracy}"
    assert accuracy[-1] > accuracy[0] + 0.2, accuracy
    for party in ("alice", "bob", "carol"):
        assert f"{party}: final accuracy {accuracy[-1]:.3f}" in done.stdout, done


def test_split_learning_loss_falls(tmp_path: Path) -> None:
    done = _run_example("split_learning.yaml", tmp_path)
    assert done.returncode == 0, done
    losses = _numbers(r"\[bob\] +steps \d+-\d+: loss ([0-9.]+)", done.stdout)
    assert len(losses) == 6, done
    assert losses == sorted(losses, reverse=True), f"loss rose somewhere: {losses}"
    assert losses[-1] < losses[0] - 0.1, losses
    assert "[alice]" not in done.stdout, "alice never sees the loss"


def test_error_handling_exits_1_with_fed_remote_error(tmp_path: Path) -> None:
    done = _run_example("error_handling.yaml", tmp_path)
    assert done.returncode == 1, done
    assert re.search(
        r"^\[alice\] +alice: FedRemoteError from bob: record 3 is corrupt$",
        done.stdout,
        re.MULTILINE,
    ), done
    assert "silo: party alice failed: FedRemoteError occurred at bob" in done.stderr, done
    assert "silo: party bob failed: ValueError: record 3 is corrupt" in done.stderr, done
    assert "silo: 2 of 2 parties failed" in done.stderr, done


@pytest.mark.parametrize(
    "name", ["quickstart.py", "fed_avg.py", "split_learning.py", "simulate_faults.py"]
)
def test_example_program_runs_standalone_with_simulate(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=90,
        env=silo_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the program printed its results"
