"""Make sure OpenSSL frees a connection's record buffers while it is idle.

Every TLS connection has two OpenSSL record buffers, for reading and for
writing, about 17 KiB each.  With ``SSL_MODE_RELEASE_BUFFERS`` OpenSSL frees
them whenever they are empty and allocates them again for the next record, so
an idle IMAP IDLE or SMTP connection costs ~33 KiB less (measured: 64 instead of
31 KiB of OpenSSL memory per idle server connection with a client
certificate), for one malloc/free pair per record.

CPython sets this mode on every ``SSLContext`` it creates (since 3.6,
bpo-25672), but offers no API to read or set it: the gateway's memory budget
would silently depend on that choice.  :func:`release_buffers`, applied to every
context ``mssgw.tls.context`` builds, reads the mode of the ``SSL_CTX`` through
``ctypes`` and sets the bit if it is missing; every ``SSL`` made from the
context inherits the mode at ``SSL_new`` (CPython ORs its own per-connection
modes into it).

Reaching into the ``SSLContext`` object is guarded: the ``SSL_CTX *`` read
from it (the first field after the object header, ``PySSLContext`` in
Modules/_ssl.c) must report the same options as ``context.options`` before
anything is read or written, and the mode is read back afterwards.  When
anything does not match (another interpreter, another layout, another libssl)
nothing is written, a debug line is logged and the context is used as it is.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import sys
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

#: ``SSL_MODE_RELEASE_BUFFERS`` and ``SSL_CTRL_MODE`` from openssl/ssl.h
#: (stable since OpenSSL 1.0.0).
SSL_MODE_RELEASE_BUFFERS = 0x10
SSL_CTRL_MODE = 33


@cache
def _libssl() -> Any:
    """The libssl the ``_ssl`` module is linked to (dlsym searches its
    dependencies), with the two functions used here declared."""
    import _ssl

    lib = ctypes.CDLL(_ssl.__file__)
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    # uint64_t in OpenSSL 3, unsigned long in 1.1.1: the same on 64-bit Linux.
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    return lib


def ssl_ctx_pointer(context: object) -> int:
    """``SSL_CTX *`` of a CPython ``SSLContext``: the first field after the
    object header (``PySSLContext`` in Modules/_ssl.c, 3.8 to 3.13).  Callers
    cross-check it before use."""
    header = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)
    pointer = ctypes.c_void_p.from_address(id(context) + header).value
    if not pointer:
        raise OSError("no SSL_CTX pointer")
    return pointer


def mode(context: ssl.SSLContext) -> int | None:
    """The ``SSL_CTX`` mode bits of ``context``; ``None`` when they cannot be
    read safely (see :func:`release_buffers`)."""
    try:
        lib, pointer = _checked(context)
    except (OSError, AttributeError, TypeError) as exc:
        log.debug("TLS: cannot read the SSL_CTX mode (%s)", exc)
        return None
    return int(lib.SSL_CTX_ctrl(pointer, SSL_CTRL_MODE, 0, None))


def _checked(context: ssl.SSLContext) -> tuple[Any, int]:
    """libssl and the ``SSL_CTX *`` of ``context``, after the cross-checks."""
    if sys.implementation.name != "cpython" or type(context) is not ssl.SSLContext:
        raise TypeError(f"not a CPython ssl.SSLContext: {type(context).__name__}")
    lib = _libssl()
    pointer = ssl_ctx_pointer(context)
    # The options CPython keeps on the context are a distinctive 64-bit value
    # (protocol, compression, renegotiation, ticket bits...): reading the same
    # through the pointer means it is the SSL_CTX of this context.
    if int(lib.SSL_CTX_get_options(pointer)) != int(context.options):
        raise OSError("SSL_CTX options cross-check failed")
    return lib, pointer


def release_buffers(context: ssl.SSLContext) -> bool:
    """Set ``SSL_MODE_RELEASE_BUFFERS`` on ``context``; True when it is set.

    Call it before the context makes its first connection (connections made
    earlier keep their mode).  Never raises: on any mismatch the context is
    left as it was.
    """
    try:
        lib, pointer = _checked(context)
        lib.SSL_CTX_ctrl(pointer, SSL_CTRL_MODE, SSL_MODE_RELEASE_BUFFERS, None)
        if not lib.SSL_CTX_ctrl(pointer, SSL_CTRL_MODE, 0, None) & SSL_MODE_RELEASE_BUFFERS:
            raise OSError("mode read-back failed")
    except (OSError, AttributeError, TypeError) as exc:
        log.debug("TLS: record buffers stay allocated per connection (%s)", exc)
        return False
    return True
