"""``mssgw trust``: verify, show and fetch the liste blanche; check a peer."""

from __future__ import annotations

import argparse
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from mssgw import config
from mssgw.cli._common import group, settings_from
from mssgw.errors import ConfigError, MssgwError
from mssgw.text import is_digits


def register(sub: Any) -> None:
    trust = group(sub, "trust", "liste blanche and peer trust (TRUST-1…6)")

    verify = trust.add_parser(
        "verify",
        help="verify a liste blanche file",
        description="Check the signature, the signer and the structure of a liste blanche file. "
        "Last line on success: entries=<n> domains=<m>.",
    )
    verify.add_argument("file", metavar="FILE", type=Path)
    verify.add_argument("--at", metavar="ISO-DATE", help="verify as of this instant (default: now)")
    verify.add_argument(
        "--anchors", metavar="PEM", help="IGC-Santé anchors the signer must chain to"
    )
    verify.add_argument("--expected-signer", metavar="DN", help="required signer subject DN")
    verify.set_defaults(handler=verify_cmd)

    show = trust.add_parser(
        "show",
        help="show what the liste blanche says about a domain",
        description="Print the operator DNs, description and contacts listed for DOMAIN.",
    )
    show.add_argument("domain", metavar="DOMAIN")
    show.add_argument(
        "--file", metavar="F", type=Path, help="list file (default: trust.liste_blanche_file)"
    )
    show.add_argument("--at", metavar="ISO-DATE", help="verify as of this instant (default: now)")
    show.set_defaults(handler=show_cmd)

    fetch = trust.add_parser(
        "fetch",
        help="download (or read) the liste blanche and keep it if it verifies",
        description="Fetch from URL (conditional GET) or read FILE (default: "
        "trust.liste_blanche_url); the copy is kept in trust.liste_blanche_file only if it "
        "verifies and is not older than the copy in use (TRUST-3).",
    )
    fetch.add_argument("source", nargs="?", metavar="URL|FILE")
    fetch.set_defaults(handler=fetch_cmd)

    peer = trust.add_parser(
        "check-peer",
        help="connect to an MSSanté MTA and check it against the liste blanche",
        description="Connect to HOST:PORT (SMTP STARTTLS unless --no-smtp), print the "
        "certificate chain and subject DN, and the peer-binding verdict for --domain.",
    )
    peer.add_argument("target", metavar="HOST:PORT")
    peer.add_argument("--domain", required=True, metavar="D", help="domain the peer claims")
    peer.add_argument(
        "--smtp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use SMTP STARTTLS (default)",
    )
    peer.add_argument("--timeout", type=float, default=20.0, help="seconds (default 20)")
    peer.set_defaults(handler=check_peer_cmd)


# --------------------------------------------------------------------------- helpers


def _instant(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MssgwError(f"--at {text!r}: expected an ISO 8601 date or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise MssgwError(f"{path}: cannot read: {exc.strerror}") from None


def _anchors(path: str | None) -> list[x509.Certificate] | None:
    if not path:
        return None
    from mssgw.tls.context import load_certificates

    return load_certificates(path)


def _list_path(settings: config.Settings) -> Path:
    """Where the copy in use lives: trust.liste_blanche_file or the state dir."""
    if settings.trust.liste_blanche_file:
        return Path(settings.trust.liste_blanche_file)
    return settings.state_dir / "trust" / "listeblanchemssante.xml"


# --------------------------------------------------------------------------- commands


def verify_cmd(args: argparse.Namespace) -> int:
    from mssgw.trust.listeblanche import load_verified

    at = _instant(args.at)
    liste = load_verified(
        _read(args.file),
        at=at,
        anchors=_anchors(args.anchors),
        expected_signer=args.expected_signer,
    )
    print(f"signature: valid (signer {liste.signer.subject.rfc4514_string()})")
    print(
        f"signer valid until {liste.signer.not_valid_after_utc.isoformat()}; "
        f"checked at {at.isoformat()}"
    )
    if not args.anchors:
        print("warning: signer chain not checked (no --anchors)")
    print(f"generated {liste.generated_at.isoformat()}")
    for skipped in liste.skipped:
        print(f"warning: entry skipped: {skipped}")
    print(f"entries={liste.entries} domains={liste.domains}")
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    from mssgw.trust.listeblanche import load_verified

    anchors: list[x509.Certificate] | None = None
    expected: str | None = None
    path = args.file
    if path is None or _has_config(args):
        settings = settings_from(args)
        path = path or _list_path(settings)
        anchors = _anchors(settings.tls.anchors)
        expected = settings.trust.expected_signer or None
    liste = load_verified(
        _read(path), at=_instant(args.at), anchors=anchors, expected_signer=expected
    )
    info = liste.info(args.domain)
    if info is None:
        raise MssgwError(
            f"{args.domain}: not on the liste blanche generated {liste.generated_at.isoformat()}"
        )
    print(f"{info.domain}: {len(info.entries)} operator certificate(s)")
    for entry in info.entries:
        print(f"  DN          {entry.dn}")
        print(f"  description {entry.description}")
        print(f"  responsable {entry.responsable_contact}")
        print(f"  support     {entry.support_contact}")
        print(f"  updated     {entry.updated}")
    return 0


def _has_config(args: argparse.Namespace) -> bool:
    try:
        settings_from(args)
    except ConfigError:
        return False
    return True


def fetch_cmd(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from mssgw.trust.listeblanche import ListeBlancheError
    from mssgw.trust.refresh import ListeBlancheStore, fetch_once

    settings = settings_from(args)
    source = args.source or settings.trust.liste_blanche_url
    if not source:
        raise ConfigError("no source: pass URL|FILE or set trust.liste_blanche_url")
    store = ListeBlancheStore(
        _list_path(settings),
        anchors=_anchors(settings.tls.anchors),
        expected_signer=settings.trust.expected_signer,
        max_age=timedelta(hours=settings.trust.max_age_hours),
    )
    try:
        store.load()
    except ListeBlancheError as exc:
        print(f"warning: copy in use {store.path} no longer verifies: {exc}")
    outcome = fetch_once(store, source)
    if not outcome.ok:
        raise MssgwError(f"liste blanche not updated ({outcome.status}): {outcome.detail}")
    print(f"{outcome.status}: {outcome.detail}")
    if outcome.liste is not None:
        print(f"copy in use: {store.path}")
        print(f"entries={outcome.liste.entries} domains={outcome.liste.domains}")
    return 0


def check_peer_cmd(args: argparse.Namespace) -> int:
    from mssgw.tls.context import load_certificates, peer_chain
    from mssgw.tls.crl import CrlSet
    from mssgw.tls.identity import subject_dn
    from mssgw.trust.binding import check_peer
    from mssgw.trust.listeblanche import load_verified

    settings = settings_from(args)
    host, port = _host_port(args.target)
    if not settings.tls.anchors:
        raise ConfigError(f"{settings.source}: tls.anchors is required to check a peer")
    anchors = load_certificates(settings.tls.anchors)
    crl_set = CrlSet([Path(p) for p in settings.tls.crls])
    crl_set.refresh()
    now = datetime.now(UTC)
    liste = load_verified(
        _read(_list_path(settings)),
        at=now,
        anchors=anchors,
        expected_signer=settings.trust.expected_signer or None,
    )
    conn = _connect(host, port, settings, smtp=args.smtp, timeout=args.timeout)
    try:
        chain = peer_chain(conn)
        cipher = conn.cipher()
        print(f"connected: {conn.version()} {cipher[0] if cipher else ''}")
    finally:
        conn.close()
    for depth, cert in enumerate(chain):
        print(f"  {depth} subject {cert.subject.rfc4514_string()}")
        print(f"    issuer  {cert.issuer.rfc4514_string()}")
        print(
            f"    valid   {cert.not_valid_before_utc.isoformat()} .. "
            f"{cert.not_valid_after_utc.isoformat()}"
        )
    if chain:
        print(f"DN: {subject_dn(chain[0])}")
    decision = check_peer(
        chain, args.domain, liste, now, anchors, crl_set.crls if settings.tls.crls else None
    )
    print(f"verdict: {decision.smtp_reply()}")
    return 0 if decision.ok else 1


def _host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not is_digits(port):
        raise MssgwError(f"{target!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _connect(
    host: str, port: int, settings: config.Settings, *, smtp: bool, timeout: float
) -> ssl.SSLSocket:
    """TLS (after SMTP STARTTLS, RFC 3207) with our client certificate.

    The handshake does not verify (we want to see and judge any chain); the
    verdict comes from ``check_peer``.
    """
    from mssgw.tls.profiles import apply_profile, get_profile

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    apply_profile(ctx, get_profile(settings.tls.profile))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    cert = settings.tls.client_certificate or settings.tls.certificate
    key = settings.tls.client_key or settings.tls.key
    if cert and key:
        ctx.load_cert_chain(cert, key)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise MssgwError(f"{host}:{port}: cannot connect: {exc}") from None
    try:
        if smtp:
            _starttls(raw, settings.gateway.hostname)
        return ctx.wrap_socket(raw, server_hostname=host)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise MssgwError(f"{host}:{port}: TLS failed: {exc}") from None


def _starttls(sock: socket.socket, helo: str) -> None:
    reader = sock.makefile("rb")

    def reply() -> tuple[int, str]:
        lines = []
        while True:
            line = reader.readline(4096).decode("ascii", "replace").rstrip("\r\n")
            if not line:
                raise MssgwError("connection closed during SMTP dialogue")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        code = int(lines[-1][:3]) if is_digits(lines[-1][:3]) else 0
        return code, "\n".join(lines)

    def expect(expected: int, what: str) -> str:
        code, text = reply()
        if code != expected:
            raise MssgwError(f"SMTP {what}: {text}")
        return text

    expect(220, "greeting")
    sock.sendall(f"EHLO {helo}\r\n".encode())
    if "STARTTLS" not in expect(250, "EHLO").upper():
        raise MssgwError("peer does not offer STARTTLS")
    sock.sendall(b"STARTTLS\r\n")
    expect(220, "STARTTLS")
    reader.close()  # drops the file's reference; the socket stays open
