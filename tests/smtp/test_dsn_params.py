"""MAIL/RCPT argument parsing: paths, RFC 3461 DSN parameters kept as sent."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssgw.smtp.dsn_params import (
    ArgumentError,
    MailParams,
    RcptParams,
    decode_xtext,
    encode_xtext,
    is_xtext,
    parse_mail,
    parse_rcpt,
)


def test_mail_values_kept_as_sent() -> None:
    arg = parse_mail("<Dr.Martin@op2.mssante.test> RET=hdrs ENVID=Ab+2Bc SIZE=1234 body=8bitmime")
    assert arg.sender == "Dr.Martin@op2.mssante.test"
    assert arg.params == MailParams(size=1234, body="8bitmime", ret="hdrs", envid="Ab+2Bc")


def test_rcpt_values_kept_as_sent() -> None:
    arg = parse_rcpt("<b@op1.mssante.test> notify=Success,DELAY ORCPT=rfc822;B@Op1.mssante.test")
    assert arg.recipient == "b@op1.mssante.test"
    assert arg.params == RcptParams(notify="Success,DELAY", orcpt="rfc822;B@Op1.mssante.test")


@pytest.mark.parametrize(
    ("text", "sender"),
    [
        ("<>", ""),
        (" <a@b.fr>", "a@b.fr"),  # a space after the colon is tolerated
        ("<@relay.fr,@other.fr:a@b.fr>", "a@b.fr"),  # source route ignored (RFC 5321 4.1.2)
        ('<"john doe>"@b.fr>', '"john doe>"@b.fr'),
        ("<a@[192.0.2.1]>", "a@[192.0.2.1]"),
        ("<médecin@hôpital.fr> SMTPUTF8", "médecin@hôpital.fr"),
    ],
)
def test_paths(text: str, sender: str) -> None:
    assert parse_mail(text).sender == sender


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("a@b.fr", "501 5.5.4"),
        ("<a@b.fr", "501 5.5.4"),
        ("<a@b.fr>SIZE=1", "501 5.5.4"),
        ("<a@b.fr> SIZE=x", "501 5.5.4"),
        ("<a@b.fr> SIZE=²", "501 5.5.4"),  # a Unicode digit: isdigit() but not int()
        ("<a@b.fr> SIZE=٣", "501 5.5.4"),  # another: int() reads it as 3
        ("<a@b.fr> SIZE=1 SIZE=2", "501 5.5.4"),
        ("<a@b.fr> RET=ALL", "501 5.5.4"),
        ("<a@b.fr> ENVID=a+zz", "501 5.5.4"),
        ("<a@b.fr> ENVID=" + "x" * 101, "501 5.5.4"),
        ("<a@b.fr> SMTPUTF8=yes", "501 5.5.4"),
        ("<a@b.fr> BODY=BINARYMIME", "555 5.5.4"),
        ("<a@b.fr> AUTH=<>", "555 5.5.4"),
        ("<a b@b.fr>", "553 5.1.7"),
        ("<a@-b.fr>", "553 5.1.7"),
        ("<médecin@b.fr>", "553 5.6.7"),  # non-ASCII without SMTPUTF8
        ("<" + "a" * 65 + "@b.fr>", "553 5.1.7"),
    ],
)
def test_mail_refusals(text: str, reply: str) -> None:
    with pytest.raises(ArgumentError) as info:
        parse_mail(text)
    d = info.value.decision
    assert f"{d.smtp_code} {d.enhanced}" == reply


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("<>", "553 5.1.3"),
        ("<a@b.fr> NOTIFY=NEVER,SUCCESS", "501 5.5.4"),
        ("<a@b.fr> NOTIFY=SUCCESS,SUCCESS", "501 5.5.4"),
        ("<a@b.fr> NOTIFY=", "501 5.5.4"),
        ("<a@b.fr> ORCPT=a@b.fr", "501 5.5.4"),
        ("<a@b.fr> ORCPT=rfc822;a=b", "501 5.5.4"),
        ("<a@b.fr> XFOO=1", "555 5.5.4"),
        ("<a@@b.fr>", "553 5.1.3"),
    ],
)
def test_rcpt_refusals(text: str, reply: str) -> None:
    with pytest.raises(ArgumentError) as info:
        parse_rcpt(text)
    d = info.value.decision
    assert f"{d.smtp_code} {d.enhanced}" == reply


def test_postmaster_without_domain() -> None:
    assert parse_rcpt("<Postmaster>").recipient == "postmaster"


def test_parameters_need_ehlo() -> None:
    with pytest.raises(ArgumentError):
        parse_mail("<a@b.fr> SIZE=10", esmtp=False)
    assert parse_mail("<a@b.fr>", esmtp=False).sender == "a@b.fr"


@given(st.text(max_size=40))
def test_xtext_roundtrip(value: str) -> None:
    encoded = encode_xtext(value)
    assert is_xtext(encoded)
    if value.isascii():
        assert decode_xtext(encoded) == value
