"""Change notification between IMAP sessions: "folder F reached MODSEQ m".

Why so little in a notification: the message says only *that* a folder
changed and up to which MODSEQ.  Each session then asks the store what
changed since the MODSEQ it knows (``Mail.changes``), so notifications may be
merged, duplicated, reordered or lost-and-retried without any session ever
seeing changes out of order: the order comes from MODSEQ, not from the
channel.  That is also what makes the channel replaceable.

Interface (:class:`ChangeChannel`): ``publish(folder_id, modseq)`` after a
commit, ``subscribe(folder_id)`` giving a :class:`Subscription` whose ``modseq``
rises when a higher MODSEQ is announced, and whose ``waker`` (set by the
session, if any) is then called.

* :class:`LocalChannel`: in-process, one per node.
* Several nodes on PostgreSQL (``pgnotify.PostgresBridge``): ``publish`` runs
  ``SELECT pg_notify('mssgw_folders', '<folder_id>:<modseq>')`` on the
  store's engine; each node holds one dedicated asyncpg connection with
  ``add_listener('mssgw_folders', ...)`` whose callback calls the local
  channel's ``publish``.  Payloads are tiny (well under the 8000-octet
  limit) and PostgreSQL delivers them only after commit, so a session never
  wakes up before the change is visible.  A lost connection is handled by
  marking every subscription changed after reconnecting (a spurious
  resynchronisation costs one query per selected session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Subscription:
    """One session's interest in one folder."""

    __slots__ = ("channel", "folder_id", "modseq", "stale", "waker")

    def __init__(self, channel: LocalChannel, folder_id: int) -> None:
        self.channel = channel
        self.folder_id = folder_id
        #: Highest MODSEQ announced for the folder since subscribing.
        self.modseq = 0
        #: Announcements may have been missed (the channel between nodes was
        #: down): the session asks the store once, then clears it.
        self.stale = False
        #: Called when ``modseq`` rises (the IMAP driver wakes an IDLE session).
        self.waker: Callable[[], None] | None = None

    def close(self) -> None:
        self.channel._drop(self)


class ChangeChannel(Protocol):
    def publish(self, folder_id: int, modseq: int) -> None: ...

    def subscribe(self, folder_id: int) -> Subscription: ...


class LocalChannel:
    """In-process channel: a set of subscriptions per folder id."""

    def __init__(self) -> None:
        self._subs: dict[int, set[Subscription]] = {}
        self.published = 0

    def publish(self, folder_id: int, modseq: int) -> None:
        self.published += 1
        for sub in self._subs.get(folder_id, ()):
            if modseq > sub.modseq:
                sub.modseq = modseq
                if sub.waker is not None:
                    sub.waker()

    def poke_all(self) -> None:
        """Mark every subscription stale and wake it (announcements were lost)."""
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.stale = True
                if sub.waker is not None:
                    sub.waker()

    def subscribe(self, folder_id: int) -> Subscription:
        sub = Subscription(self, folder_id)
        self._subs.setdefault(folder_id, set()).add(sub)
        return sub

    def _drop(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.folder_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.folder_id]

    def subscribers(self, folder_id: int) -> int:
        return len(self._subs.get(folder_id, ()))
