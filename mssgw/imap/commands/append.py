"""APPEND (RFC 3501 §6.3.11, RFC 4315 APPENDUID, RFC 7889 APPENDLIMIT).

The size limit is enforced by the protocol reader before the literal is
read (``NO [TOOBIG]``); large literals arrive spooled to a temporary file
and are streamed into the blob store.  ``OK`` is sent only once the
message is durable (SPEC STORE-2: ``Mail.append`` returns after fsync and
commit).
"""

from __future__ import annotations

from typing import BinaryIO

from mssgw.errors import NoSuchFolder
from mssgw.imap.protocol import SpooledLiteral, writer
from mssgw.imap.protocol import commands as c
from mssgw.imap.session import Refusal, Session
from mssgw.imap.view import parse_flags


async def append(session: Session, cmd: c.Append) -> None:
    try:
        bits, keywords = parse_flags(cmd.flags)
    except ValueError as exc:
        raise Refusal(str(exc), bad=True) from None
    data: bytes | BinaryIO
    if isinstance(cmd.message, SpooledLiteral):
        spool = session.literal_files.pop(cmd.message.index, None)
        if spool is None:
            raise Refusal("message data lost", bad=True)
        spool.seek(0)
        data = spool
        size = cmd.message.size
    else:
        data, size = cmd.message, len(cmd.message)
    if size == 0:
        raise Refusal("empty message", bad=True)
    identity = session.identity
    assert identity is not None
    trace = session.trace_record("imap.append", recipients=identity.mailbox.address, size=size)
    try:
        # The trace is committed with the message: no commit of its own.  The
        # folder is found by name in that same transaction (no read before).
        stored = await session.mail.append(
            identity.mailbox.address,
            cmd.mailbox.name,
            data,
            flags=bits,
            keywords=keywords,
            internaldate=cmd.internal_date,
            trace=trace,
        )
    except NoSuchFolder:
        # RFC 3501 §6.3.11: the client may CREATE it and try again.
        raise Refusal(f"no folder {cmd.mailbox.name!r}", code=writer.codes.TRYCREATE) from None
    finally:
        if not isinstance(data, bytes):
            data.close()
    view = session.view
    if view is not None and view.folder.id == stored.folder_id:
        # Alone in the folder meanwhile: the view learns the new message without
        # reading it back (the same values the delivery stored).
        view.apply_own_append(session.mail.appended(stored, bits, keywords))
    await session.catch_up(allow_expunge=True)
    session.ok(
        cmd.tag, "APPEND completed", writer.codes.appenduid(stored.uidvalidity, [stored.uid])
    )
