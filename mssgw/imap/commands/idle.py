"""IDLE (RFC 2177): the driver waits for DONE, changes, or the keep-alive timer.

While idling, changes of the selected folder are sent at once (EXISTS,
EXPUNGE and FETCH FLAGS; expunges are allowed since no command is being
answered); the driver sends ``* OK Still here`` every
``ImapLimits.keepalive`` seconds so that idle connections survive NAT and
firewall timeouts.
"""

from __future__ import annotations

from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol import writer
from mssgw.imap.session import Action, Session


async def idle(session: Session, cmd: c.Idle) -> Action:
    session.idle_tag = cmd.tag
    session.send(writer.continuation("idling"))
    await session.catch_up(allow_expunge=True)
    return Action.IDLE


async def changed(session: Session) -> None:
    """A notification arrived during IDLE."""
    await session.catch_up(allow_expunge=True)


def keepalive(session: Session) -> None:
    session.send(writer.ok(None, "Still here"))


async def done(session: Session, tag: str) -> None:
    session.idle_tag = None
    await session.catch_up(allow_expunge=True)
    session.send(writer.ok(tag, "IDLE terminated"))
