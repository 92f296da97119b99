"""STORE, COPY, MOVE, EXPUNGE and their UID forms (RFC 3501 §6.4.3-8,
RFC 4315 UIDPLUS, RFC 6851 MOVE, RFC 7162 §3.1.3 UNCHANGEDSINCE)."""

from __future__ import annotations

from mssgw.imap.protocol import SequenceSet, writer
from mssgw.imap.protocol import commands as c
from mssgw.imap.session import Refusal, Session
from mssgw.imap.view import FolderView, parse_flags
from mssgw.store.mail import apply_flags
from mssgw.store.models import Flag
from mssgw.store.traces import TraceRecord

_MODES = {"replace": "FLAGS", "add": "+FLAGS", "remove": "-FLAGS"}


def _uids(view: FolderView, sequence: SequenceSet, *, uid: bool) -> list[int]:
    if sequence.saved:
        raise Refusal("$ (SEARCHRES) is not supported", bad=True)
    return [view.uids[m - 1] for m in view.resolve(sequence, uid=uid)]


async def store(session: Session, cmd: c.Store) -> None:
    view = session.writable()
    try:
        bits, keywords = parse_flags(cmd.flags)
    except ValueError as exc:
        raise Refusal(str(exc), bad=True) from None
    if cmd.unchangedsince is not None:
        session.condstore = True
    uids = [u for u in _uids(view, cmd.sequence, uid=cmd.uid) if not view.is_expunged(u)]
    result = await session.mail.store_flags(
        view.folder.id,
        uids,
        cmd.mode,
        bits,
        keywords,
        cmd.unchangedsince,
        read_first=_no_change_expected(session, view, uids, cmd.mode, bits, keywords),
    )
    view.apply_own(result.changed, result.modseq)
    if not cmd.silent or session.condstore:
        # RFC 7162 §3.1.3: with UNCHANGEDSINCE, .SILENT still reports the new MODSEQ.
        for state in sorted([*result.changed, *result.unchanged], key=lambda s: s.uid):
            msn = view.msn_of(state.uid)
            if msn is None:
                continue
            if cmd.silent:
                line = b"* %d FETCH (%sMODSEQ (%d))\r\n" % (
                    msn,
                    b"UID %d " % state.uid if cmd.uid else b"",
                    view.modseqs[msn - 1],
                )
                session.send(line)
            else:
                session.send(view.flags_response(msn, uid=cmd.uid, modseq=session.condstore))
    await session.catch_up(allow_expunge=cmd.uid)
    code = None
    if result.modified:
        # RFC 7162 §3.1.3: MODIFIED names message numbers, or UIDs for UID STORE.
        numbers = (
            result.modified
            if cmd.uid
            else [n for n in (view.msn_of(u) for u in result.modified) if n is not None]
        )
        code = writer.codes.modified(numbers)
    session.ok(cmd.tag, "STORE completed", code)


async def copy(session: Session, cmd: c.Copy | c.Move) -> None:
    move = isinstance(cmd, c.Move)
    view = session.writable() if move else session.selected()
    target = await session.folder(cmd.mailbox.name, trycreate=True)
    uids = [u for u in _uids(view, cmd.sequence, uid=cmd.uid) if not view.is_expunged(u)]
    result = await session.mail.copy(view.folder, uids, target, move=move)
    code = (
        writer.codes.copyuid(result.uidvalidity, result.source, result.target)
        if result.source
        else None
    )
    if result.source:
        session.service.trace(
            _record(session, "imap.move" if move else "imap.copy", len(result.source))
        )
    if move:
        # RFC 6851 §4.3: COPYUID in an untagged OK, then the EXPUNGEs.
        if code is not None:
            session.send(writer.ok(None, "moved", code))
        await session.catch_up(allow_expunge=True, force=bool(result.source))
        session.ok(cmd.tag, "MOVE completed")
        return
    await session.catch_up(allow_expunge=cmd.uid)
    session.ok(cmd.tag, "COPY completed", code)


move = copy


async def expunge(session: Session, cmd: c.Expunge) -> None:
    view = session.writable()
    uids = _uids(view, cmd.uids, uid=True) if cmd.uids is not None else None
    # The trace is committed with the removal: no commit of its own.
    gone, modseq = await session.mail.expunge_modseq(
        view.folder.id, uids, trace=lambda count: _record(session, "imap.expunge", count)
    )
    # Alone in the folder meanwhile: the view knows what went without reading it back.
    own = bool(gone) and view.apply_own_expunge(gone, modseq)
    await session.catch_up(allow_expunge=True, force=bool(gone) and not own)
    session.ok(cmd.tag, "EXPUNGE completed")


def _no_change_expected(
    session: Session,
    view: FolderView,
    uids: list[int],
    mode: str,
    bits: Flag,
    keywords: list[str],
) -> bool:
    """What the view knows says this STORE changes nothing (clients often set
    ``\\Seen`` again).  Only a hint: the store decides."""
    if not uids or session.behind:
        return False
    wanted = list(dict.fromkeys(keywords))
    for uid in uids:
        msn = view.msn_of(uid)
        if msn is None:
            return False
        old_flags, old_kw = view.flags[msn - 1], view.keywords.get(uid, "")
        if apply_flags(old_flags, old_kw, mode, int(bits), wanted) != (old_flags, old_kw):
            return False
    return True


def _record(session: Session, action: str, count: int) -> TraceRecord:
    assert session.identity is not None
    return session.trace_record(
        action,
        recipients=session.identity.mailbox.address,
        size=count,
        reason=f"{count} message(s)",
    )
