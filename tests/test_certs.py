"""``python -m silo certs``: files a real ``silo run`` uses, in both modes; keys never overwritten.

Also the documented TLS example flow: ``silo certs examples/quickstart_tls.yaml --out
examples/certs`` then ``silo run examples/quickstart_tls.yaml``, on a copy in ``tmp_path``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from _cli_support import EXAMPLES, Finished, copy_federation, run_silo, write_federation

PROGRAM = EXAMPLES / "quickstart.py"


def _tls_section(done: Finished) -> dict[str, object]:
    """The YAML that ``silo certs`` printed for the federation file."""
    text = done.stdout.split("(paths relative to it):\n\n", 1)[1].split("\nkeep ", 1)[0]
    section = yaml.safe_load(text)
    assert isinstance(section, dict)
    return section


def _add_section(file: Path, section: dict[str, object]) -> None:
    data = yaml.safe_load(file.read_text())
    data.update(section)
    file.write_text(yaml.safe_dump(data, sort_keys=False))


def _assert_quickstart_ran(done: Finished) -> None:
    assert done.returncode == 0, done
    assert re.search(r"^\[alice\] +alice: 5$", done.stdout, re.MULTILINE), done
    assert re.search(r"^\[bob\] +bob: 5$", done.stdout, re.MULTILINE), done


def test_ca_mode_files_run_a_job_and_keys_are_never_overwritten(tmp_path: Path) -> None:
    file = write_federation(tmp_path, PROGRAM, ["alice", "bob"])
    made = run_silo("certs", str(file), "--out", str(tmp_path / "certs"), timeout=30)
    assert made.returncode == 0, made
    section = _tls_section(made)
    assert section["tls"] == {"ca_cert": "certs/ca.pem"}
    _add_section(file, section)
    _assert_quickstart_ran(run_silo("run", str(file), timeout=60))

    keys = {p.name: p.read_bytes() for p in (tmp_path / "certs").glob("*.key")}
    assert sorted(keys) == ["alice.key", "bob.key", "ca.key"]
    assert all((tmp_path / "certs" / k).stat().st_mode & 0o077 == 0 for k in keys)
    (tmp_path / "certs" / "bob.pem").unlink()
    again = run_silo("certs", str(file), "--out", str(tmp_path / "certs"), timeout=30)
    assert again.returncode == 0, again
    for name in keys:
        assert f"reusing the existing key {tmp_path / 'certs' / name}" in again.stdout, again
    assert {p.name: p.read_bytes() for p in (tmp_path / "certs").glob("*.key")} == keys
    _assert_quickstart_ran(run_silo("run", str(file), timeout=60))


def test_self_signed_files_run_a_job_by_fingerprint(tmp_path: Path) -> None:
    file = write_federation(tmp_path, PROGRAM, ["alice", "bob"])
    made = run_silo("certs", str(file), "--out", "certs", "--self-signed", cwd=tmp_path, timeout=30)
    assert made.returncode == 0, made
    section = _tls_section(made)
    prints = section["tls"]["peer_fingerprints"]  # type: ignore[index]
    assert sorted(prints) == ["alice", "bob"]
    for party, value in prints.items():
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", value)
        assert f"  {party}: {value}" in made.stdout
    _add_section(file, section)
    assert run_silo("check", str(file), timeout=30).returncode == 0
    _assert_quickstart_ran(run_silo("run", str(file), timeout=60))


def test_a_wrong_fingerprint_in_the_file_is_a_configuration_error(tmp_path: Path) -> None:
    file = write_federation(tmp_path, PROGRAM, ["alice", "bob"])
    made = run_silo("certs", str(file), "--out", "certs", "--self-signed", cwd=tmp_path, timeout=30)
    section = _tls_section(made)
    prints = section["tls"]["peer_fingerprints"]  # type: ignore[index]
    good = prints["bob"]
    prints["bob"] = "sha256:" + "0" * 64
    _add_section(file, section)
    for args in (["check", str(file)], ["run", str(file), "--party", "bob"]):
        done = run_silo(*args, timeout=30)
        assert done.returncode == 2, done
        assert f"tls.peer_fingerprints.bob: sha256:{'0' * 64} is not the fingerprint of" in (
            done.stderr
        ), done
        assert good in done.stderr


def test_existing_files_that_cannot_be_reused_are_refused_by_name(tmp_path: Path) -> None:
    file = write_federation(tmp_path, PROGRAM, ["alice", "bob"])
    out = tmp_path / "certs"
    out.mkdir()
    (out / "bob.key").write_text("not a key\n")
    done = run_silo("certs", str(file), "--out", str(out), timeout=30)
    assert done.returncode == 2, done
    assert f"{out / 'bob.key'}: exists but is not an unencrypted PEM key" in done.stderr
    assert "never overwrites a key" in done.stderr
    assert (out / "bob.key").read_text() == "not a key\n"
    (out / "bob.key").unlink()
    (out / "alice.key").unlink()
    (out / "alice.pem").unlink()
    (out / "bob.pem").write_text("orphan\n")
    done = run_silo("certs", str(file), "--out", str(out), timeout=30)
    assert done.returncode == 2, done
    assert f"{out / 'bob.pem'}: exists without its key" in done.stderr
    done = run_silo("certs", str(file), "--out", str(out), "--party", "carol", timeout=30)
    assert done.returncode == 2, done
    assert "--party: expected one of alice, bob, got 'carol'" in done.stderr


def test_quickstart_tls_example_flow(tmp_path: Path) -> None:
    file = copy_federation(EXAMPLES / "quickstart_tls.yaml", tmp_path)
    made = run_silo("certs", str(file), "--out", str(tmp_path / "certs"), timeout=30)
    assert made.returncode == 0, made
    assert _tls_section(made)["tls"] == yaml.safe_load(file.read_text())["tls"]
    _assert_quickstart_ran(run_silo("run", str(file), timeout=60))


def test_each_organisation_makes_its_own_key_with_party(tmp_path: Path) -> None:
    file = write_federation(tmp_path, PROGRAM, ["alice", "bob"])
    done = run_silo(
        "certs",
        str(file),
        "--out",
        "certs",
        "--self-signed",
        "--party",
        "alice",
        cwd=tmp_path,
        timeout=30,
    )
    assert done.returncode == 0, done
    assert sorted(p.name for p in (tmp_path / "certs").iterdir()) == ["alice.key", "alice.pem"]
    assert re.search(r"^  alice: sha256:[0-9a-f]{64}$", done.stdout, re.MULTILINE), done
    assert "put the fingerprints of bob in tls.peer_fingerprints as well" in done.stdout
