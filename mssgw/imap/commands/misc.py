"""CAPABILITY, NOOP, LOGOUT, ID, ENABLE (RFC 3501 §6.1, RFC 2971, RFC 5161)."""

from __future__ import annotations

from mssgw.auth.sasl import MECHANISMS
from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol import writer
from mssgw.imap.session import Action, Session, State

#: Always offered (STORE-3 and what the parser understands).
BASE = ("IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE")
#: Offered once authenticated.
AUTHENTICATED = (
    "UIDPLUS",
    "MOVE",
    "SPECIAL-USE",
    "CONDSTORE",
    "UNSELECT",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
)


def capabilities(session: Session) -> list[str]:
    """RFC 3501 §6.1.1, and §6.2.1/RFC 2595: before TLS on port 143, only
    STARTTLS and LOGINDISABLED, no AUTH= (no password in clear)."""
    caps = list(BASE)
    conn = session.connection
    if session.state is State.NOT_AUTHENTICATED:
        if not conn.tls:
            if conn.starttls:
                caps.append("STARTTLS")
            caps.append("LOGINDISABLED")
        else:
            caps.extend(f"AUTH={name}" for name in MECHANISMS)
    else:
        caps.extend(AUTHENTICATED)
    caps.append(f"APPENDLIMIT={session.service.limits.max_literal}")
    return caps


async def capability(session: Session, cmd: c.Capability) -> None:
    session.send(writer.capability_data(capabilities(session)))
    session.ok(cmd.tag, "CAPABILITY completed")


async def noop(session: Session, cmd: c.Noop) -> None:
    # RFC 3501 §6.1.2: the polling command; changes arrive with its answer.
    await session.catch_up(allow_expunge=True)
    session.ok(cmd.tag, "NOOP completed")


async def logout(session: Session, cmd: c.Logout) -> Action:
    session.send(writer.bye("mssgw logging out"))
    session.ok(cmd.tag, "LOGOUT completed")
    session.close()
    return Action.CLOSE


async def id_(session: Session, cmd: c.Id) -> None:
    # RFC 2971: the client's own ID is not kept (it may hold device names).
    session.send(writer.id_data(session.service.id_params()))
    session.ok(cmd.tag, "ID completed")


async def enable(session: Session, cmd: c.Enable) -> None:
    enabled = []
    if "CONDSTORE" in cmd.capabilities:
        session.condstore = True
        enabled.append("CONDSTORE")
    session.send(writer.enabled_data(enabled))
    session.ok(cmd.tag, "ENABLE completed")
