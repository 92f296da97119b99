"""The selected folder as one session sees it: MSN ↔ UID, flags, MODSEQ.

Sans-IO.  The view starts from a store snapshot and then only changes when
the session applies :class:`~mssgw.store.mail.Changes` (pulled from the
store after a notification) or its own command results.  What the client
must be told is queued and only turned into untagged responses by
:meth:`FolderView.flush`, which is where RFC 3501 §7.4.1 is enforced: an
EXPUNGE response is never sent while a FETCH, STORE or SEARCH (by message
number) is answered, because the client would then misread the numbers of
that very response; the message stays in the view (its number stays valid,
its data reads as gone) until a command that may renumber, such as NOOP,
IDLE or any UID command.

Memory: parallel ``array`` columns rather than an object per message, so a
100,000-message folder costs a few megabytes per session that selects it.
"""

from __future__ import annotations

import bisect
import functools
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

from mssgw.imap.protocol import SequenceSet, writer
from mssgw.store.mail import Changes, FolderInfo, MessageState
from mssgw.store.models import Flag

#: System flags in the order IMAP servers usually list them (RFC 3501 §2.3.2).
SYSTEM_FLAGS: tuple[tuple[str, Flag], ...] = (
    ("\\Answered", Flag.ANSWERED),
    ("\\Flagged", Flag.FLAGGED),
    ("\\Deleted", Flag.DELETED),
    ("\\Seen", Flag.SEEN),
    ("\\Draft", Flag.DRAFT),
)
_BY_NAME = {name.lower(): bit for name, bit in SYSTEM_FLAGS}


def flag_names(flags: int, keywords: str) -> list[str]:
    names = [name for name, bit in SYSTEM_FLAGS if flags & bit]
    if keywords:
        names.extend(keywords.split())
    return names


@functools.lru_cache(maxsize=1024)
def flag_list(flags: int, keywords: str) -> bytes:
    """``(\\Seen $Label1)``: a folder uses a handful of combinations, so each
    is rendered once (the enum tests cost more than the rest of a FETCH item)."""
    return writer.flag_list(flag_names(int(flags), keywords))


def parse_flags(names: Iterable[str]) -> tuple[Flag, list[str]]:
    """Split client flag names into system bits and keywords.

    ``\\Recent`` cannot be set by a client (RFC 3501 §2.3.2) and is ignored;
    any other unknown ``\\name`` is refused with ``ValueError``.
    """
    bits = Flag(0)
    keywords: list[str] = []
    for name in names:
        if name.startswith("\\"):
            lower = name.lower()
            if lower == "\\recent":
                continue
            if lower not in _BY_NAME:
                raise ValueError(f"unknown system flag {name}")
            bits |= _BY_NAME[lower]
        else:
            keywords.append(name)
    return bits, keywords


class FolderView:
    """MSN i (1-based) is ``uids[i-1]``; UIDs ascend (RFC 3501 §2.3.1.2)."""

    def __init__(
        self,
        folder: FolderInfo,
        messages: Sequence[MessageState],
        *,
        readonly: bool = False,
    ) -> None:
        self.folder = folder
        self.readonly = readonly
        self.uids = array("q", (m.uid for m in messages))
        self.flags = array("l", (m.flags for m in messages))
        self.modseqs = array("q", (m.modseq for m in messages))
        self.keywords: dict[int, str] = {m.uid: m.keywords for m in messages if m.keywords}
        #: Folder HIGHESTMODSEQ this view is complete up to.
        self.known_modseq = folder.highestmodseq
        self.uidnext = folder.uidnext
        #: Keywords announced in FLAGS; a new one means a new FLAGS response.
        self.announced_keywords: set[str] = self._all_keywords()
        self._expunged: set[int] = set()
        self._flag_dirty: set[int] = set()
        self._exists_dirty = False
        self._flags_dirty = False

    # -- lookups ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.uids)

    def msn_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def state(self, msn: int) -> MessageState:
        uid = self.uids[msn - 1]
        return MessageState(
            uid, self.flags[msn - 1], self.keywords.get(uid, ""), self.modseqs[msn - 1]
        )

    def is_expunged(self, uid: int) -> bool:
        """Gone from the store but not yet announced (its number is still valid)."""
        return uid in self._expunged

    def resolve(self, sequence: SequenceSet, *, uid: bool) -> list[int]:
        """Message numbers (ascending) named by ``sequence``.

        UID sets (RFC 3501 §6.4.8): ``*`` is the highest UID, and UIDs that
        do not exist are ignored.  Message-number sets: ``*`` is the last
        message; numbers past the end are ignored too (lenient, like Dovecot's
        behaviour after an expunge race).
        """
        n = len(self.uids)
        if n == 0:
            return []
        out: list[int] = []
        if uid:
            for lo, hi in sequence.resolve(self.uids[-1]):
                start = bisect.bisect_left(self.uids, lo)
                end = bisect.bisect_right(self.uids, hi)
                out.extend(range(start + 1, end + 1))
        else:
            for lo, hi in sequence.resolve(n):
                lo, hi = max(lo, 1), min(hi, n)
                if lo <= hi:
                    out.extend(range(lo, hi + 1))
        return out

    def unseen_first(self) -> int | None:
        for i, f in enumerate(self.flags):
            if not f & Flag.SEEN:
                return i + 1
        return None

    def all_flag_names(self) -> list[str]:
        return [name for name, _ in SYSTEM_FLAGS] + sorted(self.announced_keywords)

    def _all_keywords(self) -> set[str]:
        words: set[str] = set()
        for kw in self.keywords.values():
            words.update(kw.split())
        return words

    # -- applying changes -------------------------------------------------------------------

    def apply(self, changes: Changes) -> None:
        """Queue what other sessions (or this one) changed; see :meth:`flush`."""
        for m in changes.messages:
            i = bisect.bisect_left(self.uids, m.uid)
            if i < len(self.uids) and self.uids[i] == m.uid:
                self._update(i, m)
            elif i == len(self.uids) and m.uid >= self.uidnext:
                self.uids.append(m.uid)
                self.flags.append(m.flags)
                self.modseqs.append(m.modseq)
                if m.keywords:
                    self.keywords[m.uid] = m.keywords
                    self._note_keywords(m.keywords)
                self.uidnext = m.uid + 1
                self._exists_dirty = True
        for uid in changes.expunged:
            if self.msn_of(uid) is not None:
                self._expunged.add(uid)
                self._flag_dirty.discard(uid)
        if changes.folder is not None:
            self.known_modseq = max(self.known_modseq, changes.folder.highestmodseq)
            self.uidnext = max(self.uidnext, changes.folder.uidnext)

    def apply_own(self, states: Iterable[MessageState], modseq: int | None) -> None:
        """This session's STORE result: update silently (the command itself
        answers), and skip the resynchronisation when nobody else changed the
        folder in between (``modseq`` is the next one)."""
        for m in states:
            i = bisect.bisect_left(self.uids, m.uid)
            if i < len(self.uids) and self.uids[i] == m.uid:
                self.flags[i] = m.flags
                self.modseqs[i] = m.modseq
                if m.keywords:
                    self.keywords[m.uid] = m.keywords
                    self._note_keywords(m.keywords)
                else:
                    self.keywords.pop(m.uid, None)
        if modseq is not None and modseq == self.known_modseq + 1:
            self.known_modseq = modseq

    def apply_own_append(self, state: MessageState) -> bool:
        """This session's APPEND into this folder, when it is the folder's only
        change since the view was complete (its MODSEQ is the next one): queue
        it as :meth:`apply` would after reading it back, and return True.
        Otherwise change nothing and return False (read the changes instead)."""
        if state.modseq != self.known_modseq + 1 or state.uid < self.uidnext:
            return False
        folder = replace(self.folder, uidnext=state.uid + 1, highestmodseq=state.modseq)
        self.apply(Changes(folder, [state], []))
        return True

    def apply_own_expunge(self, uids: Sequence[int], modseq: int | None) -> bool:
        """This session's EXPUNGE, when it is the folder's only change since the
        view was complete: queue the EXPUNGE responses as :meth:`apply` would
        after reading them back, and return True.  Otherwise return False."""
        if modseq is None or modseq != self.known_modseq + 1:
            return False
        folder = replace(self.folder, uidnext=self.uidnext, highestmodseq=modseq)
        self.apply(Changes(folder, [], list(uids)))
        return True

    def _update(self, i: int, m: MessageState) -> None:
        uid = m.uid
        old_kw = self.keywords.get(uid, "")
        if self.flags[i] == m.flags and old_kw == m.keywords and self.modseqs[i] == m.modseq:
            return
        changed_flags = self.flags[i] != m.flags or old_kw != m.keywords
        self.flags[i] = m.flags
        self.modseqs[i] = m.modseq
        if m.keywords:
            self.keywords[uid] = m.keywords
            self._note_keywords(m.keywords)
        else:
            self.keywords.pop(uid, None)
        if changed_flags:
            self._flag_dirty.add(uid)

    def _note_keywords(self, keywords: str) -> None:
        for word in keywords.split():
            if word not in self.announced_keywords:
                self.announced_keywords.add(word)
                self._flags_dirty = True

    @property
    def pending(self) -> bool:
        return bool(self._expunged or self._flag_dirty or self._exists_dirty or self._flags_dirty)

    def flush(self, *, allow_expunge: bool, condstore: bool) -> list[bytes]:
        """Untagged responses for what was queued, in an order clients accept:
        FLAGS, EXPUNGEs (highest number first, so the others do not move),
        EXISTS, then FETCH FLAGS of changed messages."""
        out: list[bytes] = []
        if self._flags_dirty:
            out.append(writer.flags_data(self.all_flag_names()))
            out.append(
                writer.ok(
                    None,
                    "Flags permitted",
                    writer.codes.permanentflags([*self.all_flag_names(), "\\*"]),
                )
            )
            self._flags_dirty = False
        if allow_expunge and self._expunged:
            for uid in sorted(self._expunged, reverse=True):
                msn = self.msn_of(uid)
                if msn is None:
                    continue
                del self.uids[msn - 1]
                del self.flags[msn - 1]
                del self.modseqs[msn - 1]
                self.keywords.pop(uid, None)
                out.append(writer.expunge(msn))
            self._expunged.clear()
        if self._exists_dirty:
            out.append(writer.exists(len(self.uids)))
            out.append(writer.recent(0))
            self._exists_dirty = False
        if self._flag_dirty:
            for uid in sorted(self._flag_dirty):
                msn = self.msn_of(uid)
                if msn is None:
                    continue
                out.append(self.flags_response(msn, uid=True, modseq=condstore))
            self._flag_dirty.clear()
        return out

    def flags_response(self, msn: int, *, uid: bool, modseq: bool) -> bytes:
        i = msn - 1
        u = self.uids[i]
        items = b""
        if uid:
            items += b"UID %d " % u
        items += b"FLAGS " + flag_list(self.flags[i], self.keywords.get(u, ""))
        if modseq:
            items += b" MODSEQ (%d)" % self.modseqs[i]
        return b"* %d FETCH (%s)\r\n" % (msn, items)

    def iter_states(self, msns: Iterable[int]) -> Iterator[MessageState]:
        for msn in msns:
            yield self.state(msn)
