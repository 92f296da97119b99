"""Modified UTF-7 for folder names (RFC 3501 §5.1.3).

Printable US-ASCII except ``&`` stands for itself, ``&`` is ``&-`` and every
other run of characters is ``&`` + base64 (``,`` instead of ``/``, no
padding) of its UTF-16BE form + ``-``.

Decoding is strict (canonical form only) so that ``encode(decode(raw)) ==
raw`` always holds: two different wire names never map to one folder.
"""

from __future__ import annotations

import binascii

from .errors import ImapProtocolError

_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


class Utf7Error(ImapProtocolError):
    """A folder name that is not canonical modified UTF-7 (answered ``NO``)."""


def _is_direct(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def encode(name: str) -> bytes:
    """Encode a folder name for the wire.

    Lone surrogates (which cannot be UTF-16 encoded) are refused with
    :class:`Utf7Error`, never silently replaced.
    """
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            try:
                utf16 = "".join(pending).encode("utf-16-be")
            except UnicodeEncodeError as exc:
                raise Utf7Error("folder name has an unpaired surrogate") from exc
            b64 = binascii.b2a_base64(utf16, newline=False).rstrip(b"=")
            out.extend(b"&" + b64.replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        if _is_direct(ch):
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode(raw: bytes) -> str:
    """Decode a wire folder name; raise :class:`Utf7Error` unless canonical."""
    out: list[str] = []
    i, n = 0, len(raw)
    after_run = False  # the previous token was an encoded run
    while i < n:
        c = raw[i]
        if not 0x20 <= c <= 0x7E:
            raise Utf7Error("folder name has a character outside printable US-ASCII")
        if c != 0x26:  # "&"
            out.append(chr(c))
            i += 1
            after_run = False
            continue
        end = raw.find(b"-", i + 1)
        if end < 0:
            raise Utf7Error("unterminated modified UTF-7 sequence in folder name")
        chunk = raw[i + 1 : end]
        i = end + 1
        if not chunk:
            out.append("&")
            after_run = False
            continue
        if after_run:
            # "&...-&...-": canonical form merges adjacent runs into one.
            raise Utf7Error("adjacent modified UTF-7 sequences in folder name")
        out.append(_decode_run(chunk))
        after_run = True
    return "".join(out)


def _decode_run(chunk: bytes) -> str:
    if any(b not in _B64_ALPHABET for b in chunk) or len(chunk) % 4 == 1:
        raise Utf7Error("bad base64 in modified UTF-7 folder name")
    padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
    data = binascii.a2b_base64(padded)
    if len(data) % 2:
        raise Utf7Error("modified UTF-7 run is not whole UTF-16 units")
    # Canonical form: unused low bits of the last base64 digit are zero.
    if binascii.b2a_base64(data, newline=False).rstrip(b"=") != padded.rstrip(b"="):
        raise Utf7Error("modified UTF-7 run has stray bits")
    try:
        text = data.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise Utf7Error("modified UTF-7 run is not valid UTF-16") from exc
    if any(_is_direct(ch) for ch in text):
        raise Utf7Error("modified UTF-7 run encodes printable US-ASCII")
    return text
