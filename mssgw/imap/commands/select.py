"""SELECT, EXAMINE, CHECK, CLOSE, UNSELECT (RFC 3501 §6.3.1-2, §6.4.1-2,
RFC 3691, RFC 7162 §3.1.2, §3.2.11)."""

from __future__ import annotations

from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol import writer
from mssgw.imap.session import Refusal, Session
from mssgw.imap.view import FolderView


async def select(session: Session, cmd: c.Select | c.Examine) -> None:
    readonly = isinstance(cmd, c.Examine)
    had_folder = session.view is not None
    # RFC 3501 §6.3.1: a failed SELECT leaves no folder selected.
    session.deselect()
    if had_folder:
        session.send(writer.ok(None, "previous folder closed", writer.codes.CLOSED))
    # One read for the folder and its messages.
    snapshot = await session.mail.open_folder(session.mailbox_id, cmd.mailbox.name)
    if snapshot is None:
        raise Refusal(f"no folder {cmd.mailbox.name!r}", code=writer.codes.NONEXISTENT)
    view = FolderView(snapshot.folder, snapshot.messages, readonly=readonly)
    if cmd.condstore:
        session.condstore = True
    session.select(view)
    flags = view.all_flag_names()
    session.send(
        writer.flags_data(flags),
        writer.ok(
            None,
            "Flags permitted" if not readonly else "No permanent flags",
            writer.codes.permanentflags([*flags, "\\*"] if not readonly else []),
        ),
        writer.exists(len(view)),
        writer.recent(0),
    )
    first_unseen = view.unseen_first()
    if first_unseen is not None:
        session.send(writer.ok(None, "first unseen", writer.codes.unseen(first_unseen)))
    session.send(
        writer.ok(None, "UIDs valid", writer.codes.uidvalidity(view.folder.uidvalidity)),
        writer.ok(None, "predicted next UID", writer.codes.uidnext(view.uidnext)),
        # RFC 7162 §3.1.2.1: with every successful SELECT/EXAMINE.
        writer.ok(None, "highest", writer.codes.highestmodseq(view.known_modseq)),
    )
    code = writer.codes.READ_ONLY if readonly else writer.codes.READ_WRITE
    session.ok(cmd.tag, f"{'EXAMINE' if readonly else 'SELECT'} completed", code)


async def check(session: Session, cmd: c.Check) -> None:
    # Everything is durable already (STORE-2); CHECK is a NOOP that may expunge.
    await session.catch_up(allow_expunge=True)
    session.ok(cmd.tag, "CHECK completed")


async def close(session: Session, cmd: c.Close) -> None:
    view = session.selected()
    if not view.readonly:
        # RFC 3501 §6.4.2: expunge silently (no EXPUNGE responses).
        await session.mail.expunge(view.folder.id)
    session.deselect()
    session.ok(cmd.tag, "CLOSE completed")


async def unselect(session: Session, cmd: c.Unselect) -> None:
    session.deselect()
    session.ok(cmd.tag, "UNSELECT completed")
