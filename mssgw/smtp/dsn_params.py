"""Sans-IO parsing of MAIL FROM / RCPT TO arguments: the path and its parameters.

Covers RFC 5321 §4.1.2 paths (null reverse-path, source routes accepted and
ignored, quoted local parts, address literals), RFC 6531 UTF-8 addresses
(only with ``SMTPUTF8``), RFC 1870 ``SIZE``, RFC 6152 ``BODY``, and the
RFC 3461 DSN parameters ``RET``, ``ENVID``, ``NOTIFY`` and ``ORCPT``.

Values are kept exactly as sent, case included (aiosmtpd upper-cases them,
which would corrupt an ``ENVID`` or an ``ORCPT`` the relay must hand back
unchanged, RFC 3461 §4.4, §4.2); only keywords are case-insensitive.

Errors are ``ArgumentError`` carrying the reply; the codes are protocol
syntax codes (RFC 5321 §4.2.3, RFC 3463), not policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mssgw.policy.decision import Decision
from mssgw.text import is_digits

# RFC 5321 §4.5.3.1: octet limits.
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256
#: RFC 3461 §4.4: ENVID is at most 100 characters; §4.2: ORCPT at most 500.
MAX_ENVID = 100
MAX_ORCPT = 500

_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_DOT_STRING = re.compile(rf"[{_ATEXT}]+(\.[{_ATEXT}]+)*\Z")
_UTEXT = "\u0080-\U0010ffff" + _ATEXT  # RFC 6531 §3.3: UTF-8 non-ASCII in atext
_DOT_STRING_UTF8 = re.compile(rf"[{_UTEXT}]+(\.[{_UTEXT}]+)*\Z")
_QUOTED = re.compile(r'"([\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"\Z')
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*\Z")
_U = "A-Za-z0-9\u0080-\U0010ffff"
_LABEL_UTF8 = rf"[{_U}]([{_U}-]*[{_U}])?"
_DOMAIN_UTF8 = re.compile(rf"{_LABEL_UTF8}(\.{_LABEL_UTF8})*\Z")
_ADDRESS_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]\Z")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
#: esmtp-value (RFC 5321 §4.1.2), widened to UTF-8 by RFC 6531 §3.3.
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u0080-\U0010ffff]+\Z")
#: xtext (RFC 3461 §4): printable ASCII but "+" and "=", or "+" two upper-case hex digits.
_XTEXT = re.compile(r"([\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\Z")
_NOTIFY = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class ArgumentError(Exception):
    """A MAIL/RCPT argument that cannot be accepted; ``decision`` is the reply."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.smtp_reply())
        self.decision = decision


def _syntax(reason: str) -> ArgumentError:
    return ArgumentError(Decision.reject(501, "5.5.4", reason))


def _unknown(keyword: str) -> ArgumentError:
    # RFC 5321 §4.1.1.11: 555 for a parameter not recognised or not implemented.
    return ArgumentError(Decision.reject(555, "5.5.4", f"{keyword} parameter not supported"))


@dataclass(frozen=True, slots=True)
class MailParams:
    """MAIL FROM parameters, values as sent (``None`` when absent)."""

    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None


@dataclass(frozen=True, slots=True)
class RcptParams:
    """RCPT TO parameters, values as sent (``None`` when absent)."""

    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class MailArgument:
    """A parsed ``MAIL FROM:`` argument; ``sender`` is "" for the null path."""

    sender: str
    params: MailParams


@dataclass(frozen=True, slots=True)
class RcptArgument:
    recipient: str
    params: RcptParams


# --------------------------------------------------------------------------- paths


def split_path(text: str) -> tuple[str, str]:
    """``"<path> params"`` → (inside of the brackets, rest).  Quotes may hide a ">"."""
    text = text.lstrip(" ")
    if not text.startswith("<"):
        raise _syntax("address must be enclosed in <> (RFC 5321 4.1.2)")
    i, n, quoted = 1, len(text), False
    while i < n:
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            rest = text[i + 1 :]
            if rest and not rest.startswith(" "):
                raise _syntax("a space must separate the address from parameters")
            return text[1:i], rest.strip(" ")
        i += 1
    raise _syntax("unterminated address, missing >")


def check_mailbox(path: str, *, utf8: bool, enhanced: str) -> str:
    """Validate ``local@domain`` (source route removed); return it unchanged.

    ``enhanced`` is X.1.7 for a sender, X.1.3 for a recipient (RFC 3463).
    """

    def bad(reason: str, code: int = 553, enh: str = f"5.{enhanced}") -> ArgumentError:
        return ArgumentError(Decision.reject(code, enh, reason))

    if path.startswith("@"):
        # RFC 5321 §4.1.2 / Appendix C: source routes MUST be accepted and ignored.
        _route, colon, path = path.partition(":")
        if not colon:
            raise bad("malformed source route")
    if len(path.encode("utf-8")) > MAX_PATH:
        raise bad("address too long")
    non_ascii = not path.isascii()
    if non_ascii and not utf8:
        # RFC 6531 §3.7.4.1
        raise ArgumentError(
            Decision.reject(553, "5.6.7", "non-ASCII address needs the SMTPUTF8 parameter")
        )
    local, at, domain = path.rpartition("@")
    if not at or not local or not domain:
        raise bad("address must be local@domain")
    if len(local.encode("utf-8")) > MAX_LOCAL and not local.startswith('"'):
        raise bad("local part longer than 64 octets")
    dot_string = _DOT_STRING_UTF8 if utf8 else _DOT_STRING
    if not (dot_string.match(local) or _QUOTED.match(local)):
        raise bad("invalid local part")
    if len(domain) > MAX_DOMAIN:
        raise bad("domain too long")
    domain_re = _DOMAIN_UTF8 if utf8 else _DOMAIN
    if not (domain_re.match(domain) or _ADDRESS_LITERAL.match(domain)):
        raise bad("invalid domain")
    return path


# --------------------------------------------------------------------------- parameters


def split_params(rest: str) -> dict[str, tuple[str, str | None]]:
    """``"A=1 b"`` → {"A": ("A", "1"), "B": ("b", None)} (upper keyword → as sent)."""
    out: dict[str, tuple[str, str | None]] = {}
    for item in rest.split():
        keyword, eq, value = item.partition("=")
        if not _KEYWORD.match(keyword) or (eq and not _VALUE.match(value)):
            raise _syntax(f"malformed parameter {item[:40]!r}")
        key = keyword.upper()
        if key in out:
            raise _syntax(f"duplicate parameter {key}")
        out[key] = (keyword, value if eq else None)
    return out


def is_xtext(value: str) -> bool:
    return bool(_XTEXT.match(value))


def decode_xtext(value: str) -> str:
    """RFC 3461 §4: ``+XX`` → the octet; raises ValueError on bad xtext."""
    if not is_xtext(value):
        raise ValueError("not xtext")
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def encode_xtext(value: str) -> str:
    return "".join(
        ch if "!" <= ch <= "~" and ch not in "+=" else "".join(f"+{b:02X}" for b in ch.encode())
        for ch in value
    )


def _no_value(key: str, value: str | None) -> None:
    if value is not None:
        raise _syntax(f"{key} takes no value")


def _need_value(key: str, value: str | None) -> str:
    if value is None:
        raise _syntax(f"{key} needs a value")
    return value


def parse_mail(arg: str, *, esmtp: bool = True) -> MailArgument:
    """Parse what follows ``MAIL FROM:`` (RFC 5321 §4.1.1.2)."""
    inside, rest = split_path(arg)
    raw = split_params(rest)
    if raw and not esmtp:
        raise _syntax("parameters need EHLO")
    size: int | None = None
    body = ret = envid = None
    smtputf8 = False
    for key, (_, value) in raw.items():
        if key == "SIZE":
            text = _need_value(key, value)
            if not is_digits(text) or len(text) > 20:
                raise _syntax("SIZE must be a number (RFC 1870)")
            size = int(text)
        elif key == "BODY":
            body = _need_value(key, value)
            if body.upper() not in ("7BIT", "8BITMIME"):
                raise _unknown(f"BODY={body[:20]}")
        elif key == "SMTPUTF8":
            _no_value(key, value)
            smtputf8 = True
        elif key == "RET":
            ret = _need_value(key, value)
            if ret.upper() not in ("FULL", "HDRS"):
                raise _syntax("RET must be FULL or HDRS (RFC 3461 4.3)")
        elif key == "ENVID":
            envid = _need_value(key, value)
            if len(envid) > MAX_ENVID or not is_xtext(envid):
                raise _syntax("ENVID must be xtext of at most 100 characters (RFC 3461 4.4)")
        else:
            raise _unknown(key)
    sender = "" if inside == "" else check_mailbox(inside, utf8=smtputf8, enhanced="1.7")
    return MailArgument(sender, MailParams(size, body, smtputf8, ret, envid))


def parse_rcpt(arg: str, *, esmtp: bool = True, smtputf8: bool = False) -> RcptArgument:
    """Parse what follows ``RCPT TO:`` (RFC 5321 §4.1.1.3)."""
    inside, rest = split_path(arg)
    raw = split_params(rest)
    if raw and not esmtp:
        raise _syntax("parameters need EHLO")
    notify = orcpt = None
    for key, (_, value) in raw.items():
        if key == "NOTIFY":
            notify = _need_value(key, value)
            words = [w.upper() for w in notify.split(",")]
            if words == ["NEVER"]:
                pass
            elif not words or any(w not in _NOTIFY for w in words) or len(set(words)) != len(words):
                raise _syntax(
                    "NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1)"
                )
        elif key == "ORCPT":
            orcpt = _need_value(key, value)
            addr_type, semi, address = orcpt.partition(";")
            if (
                not semi
                or not _ADDR_TYPE.match(addr_type)
                or not address
                or len(orcpt) > MAX_ORCPT
                or (addr_type.lower() == "rfc822" and not is_xtext(address))
            ):
                raise _syntax("ORCPT must be addr-type;xtext (RFC 3461 4.2)")
        else:
            raise _unknown(key)
    if inside == "":
        raise ArgumentError(Decision.reject(553, "5.1.3", "null recipient not allowed"))
    if inside.lower() == "postmaster":
        # RFC 5321 §4.1.1.3: "<Postmaster>" without a domain must be accepted;
        # the session maps it to the postmaster of its primary domain.
        return RcptArgument("postmaster", RcptParams(notify, orcpt))
    recipient = check_mailbox(inside, utf8=smtputf8, enhanced="1.3")
    return RcptArgument(recipient, RcptParams(notify, orcpt))
