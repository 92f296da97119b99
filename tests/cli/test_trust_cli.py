"""``mssgw trust verify|show|fetch|check-peer`` through the real command line."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mssgw.cli import main
from mssgw.tls.context import server_context
from tests.support.paths import SAMPLE_LISTE_BLANCHE
from tests.tls.pki import DevPki, make_dev_pki

SAMPLE = str(SAMPLE_LISTE_BLANCHE)


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return make_dev_pki(tmp_path_factory.mktemp("clipki"))


@pytest.fixture
def cfg(dev_pki: DevPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    m = dev_pki.manifest
    op = m["operators"][1]  # we are op2
    path = tmp_path / "mssgw.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}"\nhostname = "mx.op2.mssante.test"\n'
        f'[tls]\ncertificate = "{op["certificate"]}"\nkey = "{op["key"]}"\n'
        f'anchors = "{m["anchors"]}"\ncrls = ["{m["crl"]}"]\n'
        f'[trust]\nliste_blanche_file = "{tmp_path / "trust" / "lb.xml"}"\n'
        f'expected_signer = "{m["signer"]["dn"]}"\n'
    )
    monkeypatch.setenv("MSSGW_CONFIG", str(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- verify


def test_verify_real_sample_as_of(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trust", "verify", SAMPLE, "--at", "2025-03-01")
    assert code == 0
    assert out.splitlines()[-1] == "entries=6494 domains=4944"


def test_verify_real_sample_today_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "trust", "verify", SAMPLE)
    assert code == 1 and out == ""
    assert "expired on 2026-08-23" in err and err.count("\n") == 1


def test_verify_tampered_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = Path(SAMPLE).read_bytes().replace(b"<Nom>zenidoc.", b"<Nom>zenidoc-", 1)
    (tmp_path / "t.xml").write_bytes(data)
    code, _, err = run(capsys, "trust", "verify", str(tmp_path / "t.xml"), "--at", "2025-03-01")
    assert code == 1 and "digest mismatch" in err


def test_verify_with_anchors_and_signer(
    dev_pki: DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    m = dev_pki.manifest
    code, out, _ = run(
        capsys,
        "trust",
        "verify",
        m["liste_blanche"],
        "--anchors",
        m["anchors"],
        "--expected-signer",
        m["signer"]["dn"],
    )
    assert code == 0 and out.splitlines()[-1] == "entries=3 domains=2"
    code, _, err = run(capsys, "trust", "verify", m["liste_blanche"], "--anchors", m["root"])
    # Like the ANS file, KeyInfo holds the signer only: the anchors bundle
    # must include the intermediate (docs/trust.md), the root alone is not enough.
    assert code == 1 and "not among the configured anchors" in err


def test_verify_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "trust", "verify", str(tmp_path / "none.xml"))
    assert code == 1 and "cannot read" in err
    code, _, err = run(capsys, "trust", "verify", SAMPLE, "--at", "yesterday")
    assert code == 1 and "--at" in err


# ---------------------------------------------------------------- show / fetch


def test_show(dev_pki: DevPki, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "trust", "show", "patient.mssante.fr", "--file", SAMPLE, "--at", "2025-03-01"
    )
    assert code == 0
    assert "2 operator certificate(s)" in out and "smtps2.ens.atos-infogerance.fr" in out
    code, _, err = run(
        capsys, "trust", "show", "nowhere.test", "--file", SAMPLE, "--at", "2025-03-01"
    )
    assert code == 1 and "not on the liste blanche" in err


def test_fetch_then_show_from_config(
    dev_pki: DevPki, cfg: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "trust", "fetch", dev_pki.manifest["liste_blanche"])
    assert code == 0 and out.startswith("updated:")
    assert out.splitlines()[-1] == "entries=3 domains=2"
    assert (tmp_path / "trust" / "lb.xml").exists()
    code, out, _ = run(capsys, "trust", "show", "op1.mssante.test")
    assert code == 0 and "2 operator certificate(s)" in out
    code, _, err = run(capsys, "trust", "fetch", SAMPLE)  # expired signer: refused, copy kept
    assert code == 1 and "keeping the copy generated" in err


def test_fetch_without_source(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trust", "fetch")
    assert code == 2 and "liste_blanche_url" in err


# ---------------------------------------------------------------- check-peer


@pytest.fixture
def smtp_peer(dev_pki: DevPki) -> Iterator[tuple[str, list[str]]]:
    """A minimal SMTP server with STARTTLS presenting op1's certificate."""
    op = dev_pki.manifest["operators"][0]
    ctx = server_context(
        op["certificate"], op["key"], dev_pki.manifest["anchors"], client_cert="optional"
    )
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                conn.sendall(b"220 mx.op1.mssante.test ESMTP\r\n")
                f = conn.makefile("rb")
                seen.append(f.readline().decode().strip())
                conn.sendall(b"250-mx.op1.mssante.test\r\n250 STARTTLS\r\n")
                seen.append(f.readline().decode().strip())
                conn.sendall(b"220 2.0.0 go ahead\r\n")
                f.close()
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", seen
    listener.close()


def test_check_peer_over_starttls(
    dev_pki: DevPki, cfg: Path, smtp_peer: tuple[str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "trust", "fetch", dev_pki.manifest["liste_blanche"])[0] == 0
    target, seen = smtp_peer
    code, out, _ = run(capsys, "trust", "check-peer", target, "--domain", "op1.mssante.test")
    assert code == 0, out
    assert seen[:2] == ["EHLO mx.op2.mssante.test", "STARTTLS"]
    assert "0 subject CN=mx.op1.mssante.test" in out
    assert "1 subject CN=AC MSSGW DEVELOPPEMENT ORGANISATIONS" in out
    assert out.splitlines()[-1].startswith("verdict: 250 2.0.0")
    code, out, _ = run(capsys, "trust", "check-peer", target, "--domain", "op2.mssante.test")
    assert code == 1 and out.splitlines()[-1].startswith("verdict: 550 5.7.1")


def test_check_peer_errors(cfg: Path, dev_pki: DevPki, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "trust", "fetch", dev_pki.manifest["liste_blanche"])[0] == 0
    code, _, err = run(capsys, "trust", "check-peer", "nohostport", "--domain", "x.test")
    assert code == 1 and "HOST:PORT" in err
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    code, _, err = run(capsys, "trust", "check-peer", f"127.0.0.1:{port}", "--domain", "x.test")
    assert code == 1 and "cannot connect" in err


@pytest.mark.parametrize("sub", ["verify", "show", "fetch", "check-peer"])
def test_help(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["trust", sub, "--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out
