"""SASL mechanisms (sans-IO): PLAIN (RFC 4616), LOGIN, EXTERNAL (RFC 4422 App. A)."""

from __future__ import annotations

from mssgw.auth.sasl import (
    Challenge,
    Done,
    ExternalCredentials,
    Failed,
    PasswordCredentials,
    mechanism,
)


def test_plain_with_initial_response() -> None:
    mech = mechanism("plain")
    assert mech is not None
    step = mech.start(b"\x00user@x.test\x00s3cret")
    assert step == Done(PasswordCredentials("user@x.test", "s3cret", ""))


def test_plain_without_initial_response_asks_for_it() -> None:
    mech = mechanism("PLAIN")
    assert mech is not None
    assert mech.start(None) == Challenge(b"")
    assert mech.step(b"org@x.test\x00user@x.test\x00pw") == Done(
        PasswordCredentials("user@x.test", "pw", "org@x.test")
    )


def test_plain_refuses_malformed_responses() -> None:
    for bad in (
        b"no-nul",
        b"\x00only-user\x00",
        b"\x00\x00pw",
        b"a\x00b\x00c\x00d",
        b"\x00\xff\x00pw",
    ):
        mech = mechanism("PLAIN")
        assert mech is not None
        assert isinstance(mech.start(bad), Failed), bad


def test_login_two_challenges() -> None:
    mech = mechanism("LOGIN")
    assert mech is not None
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(b"user@x.test") == Challenge(b"Password:")
    assert mech.step(b"pw") == Done(PasswordCredentials("user@x.test", "pw"))


def test_external_authzid() -> None:
    mech = mechanism("EXTERNAL")
    assert mech is not None
    assert mech.start(b"") == Done(ExternalCredentials(""))
    mech = mechanism("EXTERNAL")
    assert mech is not None
    assert mech.start(None) == Challenge(b"")
    assert mech.step(b"org@x.test") == Done(ExternalCredentials("org@x.test"))


def test_unknown_mechanism_and_secret_free_repr() -> None:
    assert mechanism("CRAM-MD5") is None
    assert "s3cret" not in repr(PasswordCredentials("u", "s3cret"))
