"""Identity bound to certificates, both ways, and attacks that must change nothing.

Real OS processes (tests/programs/tls_parties.py) run a job of alice and bob in which bob awaits
an object of alice's; meanwhile this test attacks bob's listener with carol's valid certificate,
no certificate and another CA's certificate, and forges frames on authenticated connections.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from silo.config import CrossSiloCommConfig, TLSConfig
from silo.endpoints import parse_address
from silo.errors import SiloError
from silo.intake import STORE, Admission
from silo.log import party_logger
from silo.transport.base import CONTROL_PATH, DATA_PATH, HEADER_REFUSAL, WS_PATH
from silo.transport.server import Server
from silo.transport.tls import PeerTrust
from silo.wire import ErrorInfo, Kind, ObjectId, decode_frame, encode_control, encode_data

from _cli_support import finish, make_tls_files, start_silo, wait_for_files
from multiparty import addresses_for, free_ports

PARTIES = Path(__file__).parent / "programs" / "tls_parties.py"
JOB = "identity"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ca/``: a CA and alice, bob, carol signed by it; ``other/``: another CA's alice;
    ``self/``: self-signed alice, bob, carol."""
    root = tmp_path_factory.mktemp("certs")
    make_tls_files(root / "ca", ["alice", "bob", "carol"])
    make_tls_files(root / "other", ["alice"])
    make_tls_files(root / "self", ["alice", "bob", "carol"], self_signed=True)
    return root


def fingerprint_of(path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from silo.transport.tls import fingerprint

    return fingerprint(x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER))


def tls_config(certs: Path, party: str, mode: str, parties: list[str]) -> dict[str, Any]:
    if mode == "ca":
        d = certs / "ca"
        return {
            "ca_cert": str(d / "ca.pem"),
            "cert": str(d / f"{party}.pem"),
            "key": str(d / f"{party}.key"),
        }
    d = certs / "self"
    prints = {p: fingerprint_of(d / f"{p}.pem") for p in parties}
    return {
        "peer_fingerprints": prints,
        "cert": str(d / f"{party}.pem"),
        "key": str(d / f"{party}.key"),
    }


def client_ssl(cert_dir: Path | None, party: str | None) -> ssl.SSLContext:
    """What an attacker holds: maybe a key and certificate; it checks nothing itself."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert_dir is not None and party is not None:
        ctx.load_cert_chain(cert_dir / f"{party}.pem", cert_dir / f"{party}.key")
    return ctx


def headers(party: str) -> dict[str, str]:
    return {"X-Silo-Job": JOB, "X-Silo-Party": party, "X-Silo-Protocol": "1"}


def forged_data(src: str, object_id: ObjectId = (1, 0), value: object = 666) -> bytes:
    return encode_data(JOB, src, 1, object_id, value).join()


def forged_abort(src: str) -> bytes:
    return encode_control(
        Kind.ABORT, JOB, src, 2, extra=ErrorInfo(src, "X", "forged").to_wire()
    ).join()


def forged_error(src: str, object_id: ObjectId = (1, 0)) -> bytes:
    info = ErrorInfo(src, "X", "forged").to_wire()
    return encode_control(Kind.ERROR, JOB, src, 3, object_id, extra=info).join()


async def let_tls_close() -> None:
    """aiohttp closes a TLS connection without waiting for the TLS shutdown to finish; if the
    loop ends first, Python 3.10 reports the transport unclosed. aiohttp's advice for a graceful
    shutdown is to give the transports a moment after closing the session."""
    await asyncio.sleep(0.25)


async def refusal_of(url: str, ctx: ssl.SSLContext | None, claimed: str) -> list[tuple[int, str]]:
    """Try every route of the listener as ``claimed``; each (status, refusal text)."""
    answers = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx or False)) as session:
        try:
            async with session.ws_connect(url + WS_PATH, headers=headers(claimed)):
                answers.append((101, "websocket accepted"))
        except aiohttp.WSServerHandshakeError as exc:
            answers.append((exc.status, (exc.headers or {}).get(HEADER_REFUSAL, "")))
        for path, body in (
            (DATA_PATH, forged_data(claimed)),
            (CONTROL_PATH, forged_abort(claimed)),
        ):
            async with session.post(url + path, data=body, headers=headers(claimed)) as resp:
                answers.append((resp.status, await resp.text()))
    await let_tls_close()
    return answers


async def tls_refused(url: str, ctx: ssl.SSLContext) -> bool:
    """Whether the listener refuses the connection at the TLS layer (before any HTTP answer)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        try:
            async with session.post(
                url + CONTROL_PATH, data=forged_abort("alice"), headers=headers("alice")
            ):
                refused = False
        except aiohttp.ClientError:
            refused = True
    await let_tls_close()
    return refused


class Job:
    """alice and bob as processes; bob awaits alice's object until ``go``."""

    def __init__(self, directory: Path, certs: Path, mode: str) -> None:
        self.dir = directory
        self.addresses = addresses_for(["alice", "bob"])
        self.procs: dict[str, subprocess.Popen[str]] = {}
        for party in ("alice", "bob"):
            env = {
                **os.environ,
                "SILO_TEST_ADDRESSES": json.dumps(self.addresses),
                "SILO_TEST_DIR": str(directory),
                "PYTHONUNBUFFERED": "1",
            }
            if mode != "plain":
                env["SILO_TEST_TLS"] = json.dumps(tls_config(certs, party, mode, ["alice", "bob"]))
            self.procs[party] = subprocess.Popen(
                [sys.executable, str(PARTIES), party],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        wait_for_files([directory / "alice.ready", directory / "bob.ready"])
        self.url = f"{'http' if mode == 'plain' else 'https'}://{self.addresses['bob']}"

    def finish(self) -> dict[str, tuple[int, str, str]]:
        (self.dir / "go").touch()
        done = {}
        for party, proc in self.procs.items():
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            done[party] = (proc.returncode, out, err)
        return done

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def job_factory(tmp_path: Path, certs: Path) -> Iterator[Any]:
    jobs: list[Job] = []

    def start(mode: str) -> Job:
        jobs.append(Job(tmp_path, certs, mode))
        return jobs[-1]

    yield start
    for job in jobs:
        job.kill()


def assert_honest_run(done: dict[str, tuple[int, str, str]]) -> None:
    for party, (code, out, err) in done.items():
        assert code == 0, f"{party} exit {code}\n{out}\n{err}"
        assert "RESULT 42" in out, f"{party}\n{out}\n{err}"


def test_ca_mode_impostor_with_carols_valid_certificate_changes_nothing(
    job_factory: Any, certs: Path
) -> None:
    job = job_factory("ca")
    carol = client_ssl(certs / "ca", "carol")
    answers = asyncio.run(refusal_of(job.url, carol, "alice"))
    answers += asyncio.run(refusal_of(job.url, carol, "alice"))
    for status, text in answers:
        assert status == 403, answers
        assert "claims to come from 'alice'" in text and "'carol'" in text, answers
    carol_as_carol = asyncio.run(refusal_of(job.url, carol, "carol"))
    assert all(s == 403 and "'carol' is not a peer" in t for s, t in carol_as_carol), carol_as_carol
    assert asyncio.run(tls_refused(job.url, client_ssl(None, None))), "no certificate accepted"
    assert asyncio.run(tls_refused(job.url, client_ssl(certs / "other", "alice"))), (
        "a certificate of another CA was accepted"
    )
    done = job.finish()
    assert_honest_run(done)
    warnings = [
        line for line in done["bob"][2].splitlines() if "claims to come from 'alice'" in line
    ]
    assert len(warnings) == 1, done["bob"][2]
    assert "certificate names 'carol'" in warnings[0]


def test_fingerprint_mode_job_works_and_outsiders_are_refused(
    job_factory: Any, certs: Path
) -> None:
    job = job_factory("fingerprint")
    assert asyncio.run(tls_refused(job.url, client_ssl(certs / "self", "carol")))
    assert asyncio.run(tls_refused(job.url, client_ssl(certs / "ca", "alice")))
    no_cert = asyncio.run(refusal_of(job.url, client_ssl(None, None), "alice"))
    assert all(s == 403 and "no client certificate" in t for s, t in no_cert), no_cert
    assert_honest_run(job.finish())


# ------------------------------------------------------------------ frames on a connection


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def admit(self, src: str, object_id: ObjectId, nbytes: int) -> Admission:
        return STORE

    def deliver_data(self, src: str, object_id: ObjectId, value: object, call: str = "") -> None:
        self.calls.append(("data", src, str(object_id), repr(value)))

    def deliver_error(self, src: str, object_id: ObjectId, info: ErrorInfo, call: str = "") -> None:
        self.calls.append(("error", src, str(object_id)))

    def deliver_refused(self, src: str, object_id: ObjectId, error: SiloError) -> None:
        self.calls.append(("refused", src, str(object_id)))

    def deliver_abort(self, src: str, info: ErrorInfo) -> None:
        self.calls.append(("abort", src))


async def _send_ws(
    session: aiohttp.ClientSession, url: str, frame: bytes, party: str = "alice"
) -> tuple[Kind, str]:
    async with session.ws_connect(url + WS_PATH, headers=headers(party)) as ws:
        await ws.send_bytes(frame)
        answer, _ = decode_frame((await ws.receive(timeout=5)).data)
        return answer.kind, str(answer.extra)


@pytest.mark.parametrize("mode", ["plain", "ca", "fingerprint"])
async def test_a_frame_whose_source_is_not_its_connections_party_is_refused(
    certs: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Earlier tests may have set the process's "silo" logger above WARNING (logging_level).
    caplog.set_level(logging.WARNING, logger="silo")
    parties = ["alice", "bob", "carol"]
    addresses = {p: parse_address(p, a) for p, a in addresses_for(parties).items()}
    log = party_logger("bob", JOB)
    trust = None
    if mode != "plain":
        raw = tls_config(certs, "bob", mode, parties)
        tls = TLSConfig(
            ca_cert=raw.get("ca_cert"),
            cert=raw["cert"],
            key=raw["key"],
            peer_fingerprints=raw.get("peer_fingerprints"),
        )
        trust = PeerTrust(tls, party="bob", parties=parties, log=log)
        if mode == "fingerprint":
            # As bob's own dialer does once it has checked alice's and carol's fingerprints.
            for peer in ("alice", "carol"):
                trust.server_context.load_verify_locations(
                    cadata=(certs / "self" / f"{peer}.pem").read_text()
                )
    sink = RecordingSink()
    server = Server(
        party="bob",
        job=JOB,
        peers={"alice", "carol"},
        address=addresses["bob"],
        sink=sink,
        comm=CrossSiloCommConfig(),
        log=log,
        trust=trust,
    )
    await server.start()
    url = f"{'http' if mode == 'plain' else 'https'}://{addresses['bob']}"
    cert_dir = certs / ("ca" if mode == "ca" else "self")
    ctx = None if mode == "plain" else client_ssl(cert_dir, "alice")
    carol_ctx = None if mode == "plain" else client_ssl(cert_dir, "carol")
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx or False)
        ) as session:
            for frame in (forged_data("carol"), forged_error("carol"), forged_abort("carol")):
                kind, text = await _send_ws(session, url, frame)
                assert kind is Kind.REJECT
                assert "claims to come from 'carol'" in text and "'alice'" in text, text
            for path, frame in (
                (DATA_PATH, forged_data("carol")),
                (CONTROL_PATH, forged_abort("carol")),
            ):
                async with session.post(url + path, data=frame, headers=headers("alice")) as resp:
                    assert resp.status == 403
                    assert "claims to come from 'carol'" in await resp.text()
            assert sink.calls == []
            assert await _send_ws(session, url, forged_data("alice", value=7)) == (Kind.ACK, "None")
            assert sink.calls == [("data", "alice", "(1, 0)", "7")]
        # The forged frames took no message id of carol's: her own frame 1 is delivered.
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=carol_ctx or False)
        ) as session:
            frame = forged_data("carol", object_id=(2, 0), value=9)
            assert await _send_ws(session, url, frame, "carol") == (Kind.ACK, "None")
        assert sink.calls[-1] == ("data", "carol", "(2, 0)", "9")
    finally:
        await server.aclose()
        await let_tls_close()
    forged = [r for r in caplog.records if "claims to come from 'carol'" in r.getMessage()]
    assert len(forged) == 1, [r.getMessage() for r in forged]
    assert forged[0].levelno == logging.WARNING


# ------------------------------------------------------------------ the dialer


def _party_file(
    directory: Path, name: str, parties: dict[str, dict[str, str]], tls: dict[str, Any]
) -> Path:
    """A federation file as one organisation writes it: its own view of the job."""
    data = {
        "job_name": JOB,
        "program": f"{PARTIES}:idle",
        "parties": parties,
        "tls": tls,
        "cross_silo_comm": {"timeout_in_ms": 2000},
    }
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _entry(certs: Path, party: str, port: int, cert_of: str | None = None) -> dict[str, str]:
    who = cert_of or party
    return {
        "address": f"127.0.0.1:{port}",
        "cert": str(certs / f"{who}.pem"),
        "key": str(certs / f"{who}.key"),
    }


@pytest.mark.parametrize("mode", ["ca", "fingerprint"])
def test_the_dialer_refuses_a_listener_whose_certificate_names_another_party(
    tmp_path: Path, certs: Path, mode: str
) -> None:
    d = certs / ("ca" if mode == "ca" else "self")
    a, b = free_ports(2)
    # alice's view: bob listens at b. But carol, with her own valid certificate, is there.
    alice_parties = {"alice": _entry(d, "alice", a), "bob": _entry(d, "bob", b)}
    carol_parties = {"alice": _entry(d, "alice", a), "carol": _entry(d, "carol", b)}
    if mode == "ca":
        alice_tls = carol_tls = {"ca_cert": str(d / "ca.pem")}
    else:
        prints = {p: fingerprint_of(d / f"{p}.pem") for p in ("alice", "bob", "carol")}
        alice_tls = {"peer_fingerprints": {"alice": prints["alice"], "bob": prints["carol"]}}
        carol_tls = {"peer_fingerprints": {"alice": prints["alice"], "carol": prints["carol"]}}
    alice_file = _party_file(tmp_path, "alice.yaml", alice_parties, alice_tls)
    carol_file = _party_file(tmp_path, "carol.yaml", carol_parties, carol_tls)
    carol = start_silo("run", str(carol_file), "--party", "carol")
    alice = finish(start_silo("run", str(alice_file), "--party", "alice"), timeout=60)
    finish(carol, timeout=60)
    expected = f"dialed bob at 127.0.0.1:{b} but its certificate names 'carol'"
    assert alice.returncode == 0, alice
    assert alice.stderr.count(expected) == 1, alice


def test_a_wrong_fingerprint_is_refused_with_both_fingerprints(tmp_path: Path, certs: Path) -> None:
    d = certs / "self"
    a, b = free_ports(2)
    parties = {"alice": _entry(d, "alice", a), "bob": _entry(d, "bob", b)}
    prints = {p: fingerprint_of(d / f"{p}.pem") for p in ("alice", "bob", "carol")}
    wrong = {"alice": prints["alice"], "bob": prints["carol"]}
    alice_file = _party_file(tmp_path, "alice.yaml", parties, {"peer_fingerprints": wrong})
    right = {"alice": prints["alice"], "bob": prints["bob"]}
    bob_file = _party_file(tmp_path, "bob.yaml", parties, {"peer_fingerprints": right})
    bob = start_silo("run", str(bob_file), "--party", "bob")
    alice = finish(start_silo("run", str(alice_file), "--party", "alice"), timeout=60)
    bob_done = finish(bob, timeout=60)
    expected = (
        f"dialed bob at 127.0.0.1:{b} but its certificate (naming 'bob') has fingerprint "
        f"{prints['bob']}, not {prints['carol']} as tls_config['peer_fingerprints'] says"
    )
    assert alice.returncode == 0, alice
    assert alice.stderr.count(expected) == 1, alice
    assert bob_done.returncode == 0, bob_done
