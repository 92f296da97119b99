"""SASL mechanisms, sans-IO (RFC 4422), shared by IMAP and SMTP submission.

A mechanism is a small state machine: the edge feeds it the client's
responses (already base64-decoded) and gets back either a challenge to
send, the credentials the client presented, or a failure.  No mechanism
checks a password or a certificate itself: that is ``auth.service``'s job,
so the same PLAIN/LOGIN/EXTERNAL code serves every protocol.

Plug point: ``MECHANISMS`` maps a mechanism name to a factory.  XOAUTH2 and
OAUTHBEARER (RFC 7628) will register there and yield ``BearerToken``
credentials, which the service validates against Pro Santé Connect
(SPEC AUTH-1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PasswordCredentials:
    """PLAIN / LOGIN: who logs in (``authcid``), as whom (``authzid``), with what."""

    authcid: str
    password: str
    authzid: str = ""

    def __repr__(self) -> str:  # never log a password
        return f"PasswordCredentials(authcid={self.authcid!r}, authzid={self.authzid!r})"


@dataclass(frozen=True, slots=True)
class ExternalCredentials:
    """EXTERNAL (RFC 4422 App. A): identity comes from TLS; ``authzid`` is the
    mailbox asked for (empty: let the server choose)."""

    authzid: str = ""


@dataclass(frozen=True, slots=True)
class BearerToken:
    """XOAUTH2 / OAUTHBEARER (not offered yet): a token to validate."""

    user: str
    token: str

    def __repr__(self) -> str:
        return f"BearerToken(user={self.user!r})"


Credentials = PasswordCredentials | ExternalCredentials | BearerToken


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` as a continuation and feed the next client response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Done:
    credentials: Credentials


@dataclass(frozen=True, slots=True)
class Failed:
    """The exchange is malformed (answer with a syntax/auth failure)."""

    reason: str


Step = Challenge | Done | Failed


class Mechanism(Protocol):
    name: str

    def start(self, initial: bytes | None) -> Step:
        """First step; ``initial`` is the SASL-IR initial response (RFC 4959), if any."""

    def step(self, response: bytes) -> Step:
        """Next step with the client's (decoded) response."""


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Plain:
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` in UTF-8."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return Failed("PLAIN response must hold exactly two NUL separators")
        decoded = [_text(p) for p in parts]
        authzid, authcid, password = decoded
        if authzid is None or authcid is None or password is None:
            return Failed("PLAIN response is not UTF-8")
        if not authcid or not password or len(authcid) > 255 or len(password) > 1024:
            return Failed("PLAIN response has an empty or oversized field")
        return Done(PasswordCredentials(authcid, password, authzid))


class Login:
    """The obsolete but ubiquitous LOGIN mechanism (draft-murchison-sasl-login):
    two challenges, ``Username:`` then ``Password:``."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if initial is None or initial == b"":
            return Challenge(b"Username:")
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        text = _text(response)
        if text is None or not text or len(text) > 1024:
            return Failed("LOGIN response is empty, oversized or not UTF-8")
        if self._user is None:
            self._user = text
            return Challenge(b"Password:")
        return Done(PasswordCredentials(self._user, text))


class External:
    """RFC 4422 Appendix A: the only data is an optional authorisation identity."""

    name = "EXTERNAL"

    def start(self, initial: bytes | None) -> Step:
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> Step:
        text = _text(response)
        if text is None or len(text) > 320 or "\x00" in text:
            return Failed("EXTERNAL authorisation identity is invalid")
        return Done(ExternalCredentials(text))


#: Mechanism factories by name (upper case).  XOAUTH2/OAUTHBEARER plug in here.
MECHANISMS: dict[str, Callable[[], Mechanism]] = {
    "PLAIN": Plain,
    "LOGIN": Login,
    "EXTERNAL": External,
}

#: Mechanisms that send a password, hence only offered under TLS.
PASSWORD_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


def mechanism(name: str) -> Mechanism | None:
    factory = MECHANISMS.get(name.upper())
    return factory() if factory is not None else None
