"""Modified UTF-7 folder names (RFC 3501 §5.1.3)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssgw.imap.protocol import utf7
from mssgw.imap.protocol.errors import ImapProtocolError


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("Envoyés", b"Envoy&AOk-s"),
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 example
        ("a&b", b"a&-b"),
        ("&", b"&-"),
        ("été", b"&AOk-t&AOk-"),
        ("😀", b"&2D3eAA-"),
        ("", b""),
    ],
)
def test_known_names(name: str, wire: bytes) -> None:
    assert utf7.encode(name) == wire
    assert utf7.decode(wire) == name


@pytest.mark.parametrize(
    "wire",
    [
        b"&AGE-",  # encodes printable ASCII "a"
        b"&AOk",  # unterminated
        b"&AOk-&AOk-",  # adjacent runs must be merged
        b"caf\xc3\xa9",  # raw 8-bit
        b"&A-",  # not whole UTF-16 units
        b"&AOl-",  # stray bits in the last digit
        b"&2D0-",  # lone high surrogate
        b"&AO!-",  # not base64
        b"tab\there",
    ],
)
def test_non_canonical_refused(wire: bytes) -> None:
    with pytest.raises(ImapProtocolError):
        utf7.decode(wire)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ImapProtocolError):
        utf7.encode("\ud800")


@settings(settings.get_profile("mssgw-imap"))
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_round_trip_text(name: str) -> None:
    wire = utf7.encode(name)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert utf7.decode(wire) == name


@settings(settings.get_profile("mssgw-imap"))
@given(st.binary(max_size=40))
def test_decode_is_strict_and_canonical(wire: bytes) -> None:
    try:
        name = utf7.decode(wire)
    except ImapProtocolError:
        return
    assert utf7.encode(name) == wire
