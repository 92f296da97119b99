"""Folder commands: NAMESPACE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST,
LSUB, STATUS (RFC 3501 §6.3, RFC 2342, RFC 5258 LIST-EXTENDED, RFC 5819
LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE).

The hierarchy delimiter is ``/``; every folder is selectable (no
``\\Noselect`` placeholders: CREATE makes missing parents real folders).
"""

from __future__ import annotations

import re

from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol import writer
from mssgw.imap.session import Refusal, Session
from mssgw.store.folders import INBOX
from mssgw.store.mail import DELIMITER, FolderInfo, canonical_name
from mssgw.store.models import MailboxType

_SPECIAL_USES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")


async def namespace(session: Session, cmd: c.Namespace) -> None:
    # One personal namespace: the session opened exactly one BAL (see docs/imap.md
    # for why delegation is "log in as the ORG address" and not a shared namespace).
    session.send(writer.namespace_data([("", DELIMITER)]))
    session.ok(cmd.tag, "NAMESPACE completed")


async def create(session: Session, cmd: c.Create) -> None:
    uses = [u for u in cmd.special_use if u in _SPECIAL_USES]
    if len(uses) != len(cmd.special_use) or len(uses) > 1:
        # RFC 6154 §3: USE_ATTR_NOT_SUPPORTED would be nicer; one known attribute only.
        raise Refusal("unsupported special-use attribute", code="USEATTR")
    name = canonical_name(cmd.mailbox.name)
    if await session.mail.folder(session.mailbox_id, name) is not None or name == INBOX:
        raise Refusal(f"folder {name!r} already exists", code=writer.codes.ALREADYEXISTS)
    await session.mail.create_folder(session.mailbox_id, name, uses[0] if uses else None)
    session.ok(cmd.tag, "CREATE completed")


async def delete(session: Session, cmd: c.Delete) -> None:
    folder = await session.folder(cmd.mailbox.name)
    if folder.name == INBOX:
        raise Refusal("INBOX cannot be deleted", code=writer.codes.CANNOT)
    if session.view is not None and session.view.folder.id == folder.id:
        session.deselect()
    await session.mail.delete_folder(folder)
    _trace(session, "imap.delete-folder")
    session.ok(cmd.tag, "DELETE completed")


async def rename(session: Session, cmd: c.Rename) -> None:
    source = await session.folder(cmd.source.name)
    target = canonical_name(cmd.target.name)
    if await session.mail.folder(session.mailbox_id, target) is not None:
        raise Refusal(f"folder {target!r} already exists", code=writer.codes.ALREADYEXISTS)
    await session.mail.rename_folder(session.mailbox_id, source.name, target)
    _trace(session, "imap.rename-folder")
    await session.catch_up(allow_expunge=True)
    session.ok(cmd.tag, "RENAME completed")


async def subscribe(session: Session, cmd: c.Subscribe) -> None:
    await session.mail.subscribe(session.mailbox_id, cmd.mailbox.name, True)
    session.ok(cmd.tag, "SUBSCRIBE completed")


async def unsubscribe(session: Session, cmd: c.Unsubscribe) -> None:
    await session.mail.subscribe(session.mailbox_id, cmd.mailbox.name, False)
    session.ok(cmd.tag, "UNSUBSCRIBE completed")


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 3501 §6.3.8: ``*`` matches anything, ``%`` anything but the delimiter."""
    full = canonical_name(reference + pattern) if pattern else ""
    parts = []
    for ch in full:
        if ch == "*":
            parts.append(".*")
        elif ch == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(ch))
    expr = "".join(parts)
    # INBOX is case-insensitive, whatever the pattern's spelling.
    return re.compile(f"(?:{expr})\\Z", re.IGNORECASE if full.upper().startswith("INBOX") else 0)


def _matches(folders: list[FolderInfo], regexes: list[re.Pattern[str]]) -> list[FolderInfo]:
    return [f for f in folders if any(r.match(f.name) for r in regexes)]


def _attributes(folder: FolderInfo, names: set[str], *, subscribed: bool) -> list[str]:
    prefix = folder.name + DELIMITER
    children = any(n.startswith(prefix) for n in names)
    attrs = ["\\HasChildren" if children else "\\HasNoChildren"]
    if folder.special_use:
        attrs.append(folder.special_use)
    if subscribed and folder.subscribed:
        attrs.append("\\Subscribed")
    return attrs


async def list_(session: Session, cmd: c.List) -> None:
    patterns = [p.name for p in cmd.patterns]
    if patterns == [""] and not cmd.extended:
        # RFC 3501 §6.3.8: the delimiter and root of the reference.
        session.send(writer.list_data("", DELIMITER, ["\\Noselect"]))
        session.ok(cmd.tag, "LIST completed")
        return
    folders = await session.mail.folders(session.mailbox_id)
    names = {f.name for f in folders}
    regexes = [pattern_regex(cmd.reference.name, p) for p in patterns if p]
    chosen = _matches(folders, regexes)
    if "SUBSCRIBED" in cmd.selection:
        chosen = [f for f in chosen if f.subscribed]
    if "SPECIAL-USE" in cmd.selection:
        chosen = [f for f in chosen if f.special_use]
    show_subscribed = cmd.return_subscribed or "SUBSCRIBED" in cmd.selection
    chosen.sort(key=lambda f: (f.name != INBOX, f.name))
    for folder in chosen:
        session.send(
            writer.list_data(
                folder.name, DELIMITER, _attributes(folder, names, subscribed=show_subscribed)
            )
        )
        if cmd.return_status:
            # RFC 5819 §2: STATUS follows its LIST line.
            session.send(await _status_line(session, folder, cmd.return_status))
    session.ok(cmd.tag, "LIST completed")


async def lsub(session: Session, cmd: c.Lsub) -> None:
    if not cmd.pattern.name:
        session.send(writer.list_data("", DELIMITER, ["\\Noselect"], kind="LSUB"))
        session.ok(cmd.tag, "LSUB completed")
        return
    folders = await session.mail.folders(session.mailbox_id)
    regex = pattern_regex(cmd.reference.name, cmd.pattern.name)
    for folder in folders:
        if folder.subscribed and regex.match(folder.name):
            attrs = [folder.special_use] if folder.special_use else []
            session.send(writer.list_data(folder.name, DELIMITER, attrs, kind="LSUB"))
    session.ok(cmd.tag, "LSUB completed")


async def status(session: Session, cmd: c.Status) -> None:
    folder = await session.folder(cmd.mailbox.name)
    session.send(await _status_line(session, folder, cmd.items))
    # Thunderbird polls STATUS on other folders while one is selected: a fine
    # moment to pass on the selected folder's changes too.
    await session.catch_up(allow_expunge=True)
    session.ok(cmd.tag, "STATUS completed")


async def _status_line(session: Session, folder: FolderInfo, items: tuple[str, ...]) -> bytes:
    st = await session.mail.status(folder.id)
    values = {
        "MESSAGES": st.messages,
        "RECENT": 0,
        "UIDNEXT": st.uidnext,
        "UIDVALIDITY": st.uidvalidity,
        "UNSEEN": st.unseen,
        "HIGHESTMODSEQ": st.highestmodseq,
        "SIZE": st.size,
    }
    if "HIGHESTMODSEQ" in items:
        session.condstore = True  # RFC 7162 §3.1: a CONDSTORE enabling command
    return writer.status_data(folder.name, {k: values[k] for k in items if k in values})


def _trace(session: Session, action: str) -> None:
    session.service.trace(session.trace_record(action))


__all__ = ["MailboxType"]
