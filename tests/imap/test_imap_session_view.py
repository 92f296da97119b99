"""The selected-folder view, sans-IO: ordering of pushed changes, RFC 3501 §7.4.1."""

from __future__ import annotations

import pytest

from mssgw.imap.protocol import SequenceSet
from mssgw.imap.view import FolderView, parse_flags
from mssgw.store.mail import Changes, FolderInfo, MessageState


def folder(modseq: int, uidnext: int) -> FolderInfo:
    return FolderInfo(1, 1, "INBOX", None, True, 77, uidnext, modseq)


def view() -> FolderView:
    states = [MessageState(uid, 0, "", 2) for uid in (3, 5, 7, 9)]
    return FolderView(folder(10, 10), states)


def test_resolve_numbers_and_uids() -> None:
    v = view()
    assert v.resolve(SequenceSet.parse("2:*"), uid=False) == [2, 3, 4]
    assert v.resolve(SequenceSet.parse("4:8"), uid=True) == [2, 3]
    assert v.resolve(SequenceSet.parse("20:*"), uid=True) == [4]  # RFC 3501 §6.4.8
    assert v.resolve(SequenceSet.parse("9:12"), uid=False) == []


def test_deferred_expunge_keeps_numbers_then_flushes_in_order() -> None:
    v = view()
    v.apply(
        Changes(
            folder(13, 12),
            messages=[MessageState(5, 1, "$X", 11), MessageState(10, 0, "", 12)],
            expunged=[3, 7],
        )
    )
    during_fetch = v.flush(allow_expunge=False, condstore=True)
    assert during_fetch[:2] == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $X)\r\n",
        during_fetch[1],
    ]
    assert b"* 5 EXISTS\r\n" in during_fetch
    assert b"* 2 FETCH (UID 5 FLAGS (\\Seen $X) MODSEQ (11))\r\n" in during_fetch
    assert not any(b"EXPUNGE" in x for x in during_fetch)
    assert v.msn_of(3) == 1 and v.is_expunged(3)
    later = v.flush(allow_expunge=True, condstore=False)
    assert later == [b"* 3 EXPUNGE\r\n", b"* 1 EXPUNGE\r\n"]
    assert list(v.uids) == [5, 9, 10] and v.known_modseq == 13


def test_own_changes_are_not_echoed() -> None:
    v = view()
    v.apply_own([MessageState(5, 1, "", 11)], 11)
    assert v.known_modseq == 11  # nobody else wrote in between: no resync needed
    v.apply(Changes(folder(11, 10), messages=[MessageState(5, 1, "", 11)]))
    assert v.flush(allow_expunge=True, condstore=False) == []
    v.apply_own([MessageState(7, 1, "", 14)], 14)
    assert v.known_modseq == 11  # a gap: someone else changed 12..13


def test_flag_parsing() -> None:
    bits, kws = parse_flags(["\\SEEN", "\\Recent", "$Label1"])
    assert int(bits) == 1 and kws == ["$Label1"]
    with pytest.raises(ValueError):
        parse_flags(["\\Bogus"])


def test_own_append_is_applied_only_when_alone() -> None:
    v = view()
    # Someone else changed the folder in between (MODSEQ 11): read it back instead.
    assert not v.apply_own_append(MessageState(10, 0, "", 12))
    assert not v.pending and len(v) == 4
    assert v.apply_own_append(MessageState(10, 8, "$Y", 11))
    assert (v.known_modseq, v.uidnext, len(v)) == (11, 11, 5)
    assert v.flush(allow_expunge=True, condstore=False) == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Y)\r\n",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Y \\*)] "
        b"Flags permitted\r\n",
        b"* 5 EXISTS\r\n",
        b"* 0 RECENT\r\n",
    ]


def test_own_expunge_is_applied_only_when_alone() -> None:
    v = view()
    assert not v.apply_own_expunge([5], None)
    assert not v.apply_own_expunge([5], 12)
    assert not v.pending
    assert v.apply_own_expunge([5, 9], 11)
    assert v.known_modseq == 11
    assert v.flush(allow_expunge=True, condstore=False) == [
        b"* 4 EXPUNGE\r\n",
        b"* 2 EXPUNGE\r\n",
    ]
    assert list(v.uids) == [3, 7]
