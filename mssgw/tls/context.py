"""SSL contexts for listeners and the relay (SPEC TLS-1…3, TRUST-4, TRUST-5).

* Anchors come only from the configured files: contexts are built from a
  bare ``ssl.SSLContext`` and never call ``load_default_certs``.
* ``client_cert="required"`` (operator port 25, TLS-2): OpenSSL verifies the
  client chain against the anchors (and the CRLs, leaf checked) during the
  handshake; peer binding then runs on top (``mssgw.trust.binding``).
* ``client_cert="optional"`` (IMAP/submission, TLS-3): the certificate is
  requested but OpenSSL must not judge it, because with ``CERT_OPTIONAL`` an
  unknown or expired certificate aborts the handshake, and Python offers no
  verify callback.  We install one through ``ctypes`` that accepts every
  chain (``_request_without_verification``), and the caller verifies in
  Python afterwards with ``verified_peer``: an unknown certificate then just
  does not authenticate.  If the interpreter does not allow the hook, the
  certificate is not requested at all (never a silent accept).
* The relay's client context checks the server chain with OpenSSL; identity
  is the peer binding's job (DN vs the liste blanche), not the host name.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import ssl
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from mssgw.errors import MssgwError
from mssgw.tls import chain as chainmod
from mssgw.tls.buffers import release_buffers, ssl_ctx_pointer
from mssgw.tls.crl import crls_to_pem
from mssgw.tls.profiles import apply_profile, get_profile

log = logging.getLogger(__name__)

ClientCertMode = Literal["required", "optional", "none"]
AnchorsArg = str | os.PathLike[str] | Sequence[x509.Certificate] | None
CrlsArg = Sequence[x509.CertificateRevocationList] | None


class TlsConfigError(MssgwError):
    """Certificates, keys or anchors cannot be loaded into a TLS context."""

    exit_code = 2


# --------------------------------------------------------------------------- loading


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """All PEM certificates of a file; refuse a file with none."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{path}: cannot read certificates: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsConfigError(f"{path}: no PEM certificate found ({exc})") from None
    return certs


def anchors_list(anchors: AnchorsArg) -> list[x509.Certificate]:
    """Anchors as certificates, whether given as a path or already loaded."""
    if anchors is None:
        return []
    if isinstance(anchors, str | os.PathLike):
        return load_certificates(anchors)
    return list(anchors)


def _load_anchors(ctx: ssl.SSLContext, anchors: AnchorsArg, crls: CrlsArg) -> None:
    certs = anchors_list(anchors)
    if not certs:
        raise TlsConfigError("no trust anchors configured (tls.anchors): refusing to verify peers")
    ctx.load_verify_locations(cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in certs))
    if crls:
        # CPython reads CRLs only from files; write the ones held in memory
        # (the last valid ones, see CrlSet) to a private temporary file.
        with tempfile.NamedTemporaryFile(prefix="mssgw-crl-", suffix=".pem") as fh:
            fh.write(crls_to_pem(crls))
            fh.flush()
            ctx.load_verify_locations(cafile=fh.name)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _load_pair(
    ctx: ssl.SSLContext, cert: str | os.PathLike[str], key: str | os.PathLike[str]
) -> None:
    try:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    except FileNotFoundError:
        # ssl names no file in this error (its filename is None): say which.
        missing = [os.fspath(p) for p in (cert, key) if not os.path.exists(p)] or [
            f"{os.fspath(cert)} / {os.fspath(key)}"
        ]
        raise TlsConfigError(
            f"{', '.join(missing)}: not found (tls.certificate / tls.key)"
        ) from None
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"{cert} / {key}: cannot load certificate and key ({exc.reason or exc})"
        ) from None


# --------------------------------------------------------------------------- verify hook

_SSL_VERIFY_PEER = 1
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_any(preverify_ok: int, store_ctx: int | None) -> int:
    """OpenSSL verify callback: keep the handshake going whatever the chain."""
    return 1


#: Module-level so that it outlives every context it is installed in.
_accept_any_chain = _VERIFY_CALLBACK(_accept_any)


def _libssl() -> Any:
    """The libssl the ``_ssl`` module uses (dlsym searches its dependencies)."""
    import _ssl

    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    return lib


def _request_without_verification(ctx: ssl.SSLContext) -> bool:
    """Ask for a client certificate without letting OpenSSL reject it.

    Returns False (and leaves ``CERT_NONE``) when the hook cannot be
    installed safely; the pointer is cross-checked through the verify mode
    before anything is written.
    """
    if sys.implementation.name != "cpython":
        return False
    try:
        lib = _libssl()
        pointer = ssl_ctx_pointer(ctx)
        ctx.verify_mode = ssl.CERT_NONE
        if lib.SSL_CTX_get_verify_mode(pointer) != 0:
            raise OSError("verify mode cross-check failed")
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if lib.SSL_CTX_get_verify_mode(pointer) != _SSL_VERIFY_PEER:
            raise OSError("verify mode cross-check failed")
        lib.SSL_CTX_set_verify(pointer, _SSL_VERIFY_PEER, _accept_any_chain)
    except (OSError, AttributeError) as exc:
        ctx.verify_mode = ssl.CERT_NONE
        log.warning("TLS: cannot request optional client certificates (%s); SASL EXTERNAL off", exc)
        return False
    return True


# --------------------------------------------------------------------------- contexts


def server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    anchors: AnchorsArg,
    *,
    profile: str = "mssante",
    client_cert: ClientCertMode = "required",
    crls: CrlsArg = None,
) -> ssl.SSLContext:
    """A listener context (port 25: ``required``; client ports: ``optional``)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    release_buffers(ctx)
    apply_profile(ctx, get_profile(profile))
    _load_pair(ctx, cert, key)
    if client_cert == "none":
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    _load_anchors(ctx, anchors, crls)
    if client_cert == "required":
        ctx.verify_mode = ssl.CERT_REQUIRED
    elif client_cert == "optional":
        _request_without_verification(ctx)
    else:
        raise ValueError(f"client_cert {client_cert!r}: expected required, optional or none")
    return ctx


def client_context(
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
    anchors: AnchorsArg,
    *,
    profile: str = "mssante",
    crls: CrlsArg = None,
) -> ssl.SSLContext:
    """The relay's context: our certificate as client certificate (TLS-2),
    the receiving server verified against the anchors; host names are not
    checked (MSSanté identity is the DN, checked by peer binding)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    release_buffers(ctx)
    apply_profile(ctx, get_profile(profile))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_anchors(ctx, anchors, crls)
    if cert and key:
        _load_pair(ctx, cert, key)
    return ctx


# --------------------------------------------------------------------------- after the handshake

SslLike = ssl.SSLSocket | ssl.SSLObject
#: ``_ssl.ENCODING_DER`` (not re-exported by ``ssl``).
_ENCODING_DER: int = getattr(__import__("_ssl"), "ENCODING_DER", 2)


def load_der(der: bytes) -> x509.Certificate:
    """A DER certificate parsed completely, or ``ValueError``.

    cryptography parses some fields only when they are first read, and
    raises ``ValueError``, ``TypeError`` or ``InvalidVersion`` for damaged
    ones: reading them here makes every later check safe to run on the result.

    The same few peers (other operators' MTAs, our users' certificates)
    connect again and again: the last ``_PARSED_MAX`` certificates parsed
    are kept (certificate objects are immutable), so a new connection from
    a known peer costs a dictionary lookup instead of a parse.  Failures are
    never kept.
    """
    return _load_der_cached(der)


#: Certificates kept parsed by ``load_der`` (each a few KiB).
_PARSED_MAX = 256


@functools.lru_cache(maxsize=_PARSED_MAX)
def _load_der_cached(der: bytes) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        _ = (cert.subject, cert.issuer, cert.extensions, cert.not_valid_after_utc)
        cert.public_key()
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    return cert


def peer_chain(conn: SslLike) -> list[x509.Certificate]:
    """The certificates the peer sent, leaf first ([] when none, or when the
    leaf cannot be parsed: fail closed, as if no certificate was sent).

    Uses the (private in 3.11, public in 3.13) unverified-chain accessor so
    that intermediates sent by the peer are available to Python checks.
    """
    der = conn.getpeercert(binary_form=True)
    if not der:
        return []
    try:
        leaf = load_der(der)
    except ValueError as exc:
        log.info("peer certificate not usable (%s): treated as absent", exc)
        return []
    raw: list[Any] = []
    inner = getattr(conn, "_sslobj", None)
    getter = getattr(conn, "get_unverified_chain", None) or getattr(
        inner, "get_unverified_chain", None
    )
    if getter is not None:
        raw = list(getter() or [])
    chain = []
    for item in raw:
        try:
            chain.append(load_der(item.public_bytes(_ENCODING_DER)))
        except ValueError:  # a damaged intermediate: the path check goes without it
            continue
    if not chain or chain[0] != leaf:
        chain.insert(0, leaf)
    return chain


def verified_peer(
    conn: SslLike,
    anchors: Sequence[x509.Certificate],
    crls: CrlsArg,
    at: datetime | None = None,
) -> list[x509.Certificate] | None:
    """For optional listeners: the validated path, ``None`` when the peer sent
    no certificate; raise ``ChainError`` when it sent a bad one (the session
    goes on unauthenticated)."""
    chain = peer_chain(conn)
    if not chain:
        return None
    return chainmod.validate(chain, anchors, at or datetime.now(UTC), crls)
