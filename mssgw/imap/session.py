"""One IMAP session: the RFC 3501 §3 state machine, fed parsed commands.

The session never touches a socket.  The driver (``imap.server``) gives it
commands and SASL responses from the protocol reader; the session appends
response bytes to ``out`` and returns an :class:`Action` when the driver
must do something only it can do (start TLS, idle, send a SASL challenge,
close).  Its only awaits are store calls and ``drain``, which the driver
sets to flush ``out`` during long answers (a FETCH of 10,000 bodies is sent
as it is produced, never held whole in memory).

Command handlers live in ``imap.commands`` (one module per family) and are
plain functions ``async def handler(session, command)``; they raise
:class:`Refusal` for a tagged NO/BAD.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from mssgw.auth.identity import Identity
from mssgw.auth.sasl import Mechanism
from mssgw.errors import Conflict, MssgwError, NotFound
from mssgw.imap.notify import Subscription
from mssgw.imap.protocol import SaslResponse, writer
from mssgw.imap.protocol import commands as c
from mssgw.imap.view import FolderView
from mssgw.store.mail import FolderInfo
from mssgw.store.traces import TraceRecord

if TYPE_CHECKING:
    from cryptography import x509

    from mssgw.imap.service import ImapService

log = logging.getLogger(__name__)


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Action(enum.Enum):
    """What the driver must do after writing ``out``."""

    STARTTLS = "starttls"
    SASL_CHALLENGE = "sasl"  # call reader.expect_sasl_response(tag)
    IDLE = "idle"  # call reader.start_idle(tag), then wait for changes or DONE
    CLOSE = "close"


class Refusal(Exception):
    """A command fails: tagged ``NO`` (understood, refused) or ``BAD``."""

    def __init__(self, text: str, *, code: str | bytes | None = None, bad: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.bad = bad


@dataclass
class Connection:
    """What the session knows of its transport (filled and updated by the driver)."""

    ip: str | None = None
    tls: bool = False
    #: Port 143: STARTTLS offered; LOGINDISABLED and no AUTH= until it is done.
    starttls: bool = False
    tls_description: str | None = None
    #: Validated client certificate chain, computed on demand (EXTERNAL).
    peer_chain: Callable[[], list[x509.Certificate] | None] = field(default=lambda: None)


async def _no_drain() -> None:
    return None


Handler = Callable[["Session", Any], Awaitable["Action | None"]]


class Session:
    __slots__ = (
        "condstore",
        "connection",
        "counted_identity",
        "drain",
        "identity",
        "idle_tag",
        "literal_files",
        "mail",
        "out",
        "sasl",
        "service",
        "state",
        "subscription",
        "view",
        "wake",
    )

    def __init__(
        self,
        service: ImapService,
        connection: Connection,
        *,
        drain: Callable[[], Awaitable[None]] = _no_drain,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.mail = service.mail
        self.connection = connection
        self.drain = drain
        #: Called when the selected folder changes (the driver wakes IDLE).
        self.wake = wake
        self.state = State.NOT_AUTHENTICATED
        self.out: list[bytes] = []
        self.identity: Identity | None = None
        self.view: FolderView | None = None
        self.subscription: Subscription | None = None
        #: RFC 7162 §3.1: CONDSTORE enabled (ENABLE, SELECT (CONDSTORE), or use).
        self.condstore = False
        self.sasl: tuple[str, Mechanism] | None = None
        self.idle_tag: str | None = None
        #: Spooled APPEND literals by index, handed over by the driver.
        self.literal_files: dict[int, BinaryIO] = {}
        #: Key counted in ``service.per_identity`` while authenticated.
        self.counted_identity: str | None = None

    # -- output ---------------------------------------------------------------------

    def send(self, *chunks: bytes) -> None:
        self.out.extend(chunks)

    def take_output(self) -> list[bytes]:
        out, self.out = self.out, []
        return out

    def greeting(self) -> bytes:
        from mssgw.imap.commands.misc import capabilities

        return writer.ok(None, "mssgw IMAP ready", writer.codes.capability(capabilities(self)))

    # -- dispatch -------------------------------------------------------------------

    async def handle(self, command: c.Command | SaslResponse) -> Action | None:
        """Run one command (or SASL step); response bytes are left in ``out``."""
        from mssgw.imap.commands import HANDLERS, auth

        if isinstance(command, SaslResponse):
            return await auth.sasl_step(self, command)
        tag = command.tag
        entry = HANDLERS.get(type(command))
        if entry is None:
            self.send(writer.bad(tag, f"{command.name} is not supported"))
            return None
        handler, states = entry
        if self.state not in states:
            self.send(writer.bad(tag, f"{command.name} not allowed {self._state_text()}"))
            return None
        try:
            action = await handler(self, command)
        except Refusal as refusal:
            await self.catch_up(allow_expunge=_may_expunge(command))
            status = "BAD" if refusal.bad else "NO"
            self.send(writer.response(tag, status, refusal.text, refusal.code))
            return None
        except NotFound as exc:
            await self.catch_up(allow_expunge=_may_expunge(command))
            self.send(writer.no(tag, str(exc), writer.codes.NONEXISTENT))
            return None
        except Conflict as exc:
            self.send(writer.no(tag, str(exc), writer.codes.CANNOT))
            return None
        except MssgwError as exc:
            log.error("IMAP %s failed: %s", command.name, exc)
            self.send(writer.no(tag, "server error, try again", writer.codes.UNAVAILABLE))
            return None
        return action

    def _state_text(self) -> str:
        return {
            State.NOT_AUTHENTICATED: "before authentication",
            State.AUTHENTICATED: "without a selected folder",
            State.SELECTED: "with a folder selected",
            State.LOGOUT: "after LOGOUT",
        }[self.state]

    def ok(self, tag: str, text: str, code: str | bytes | None = None) -> None:
        self.send(writer.ok(tag, text, code))

    def trace_record(self, action: str, **fields: Any) -> TraceRecord:
        """The TRACE-1 record of a successful action of the authenticated user."""
        identity = self.identity
        assert identity is not None
        return TraceRecord(
            category="client",
            action=action,
            result="ok",
            actor=identity.actor,
            peer_ip=self.connection.ip,
            tls=self.connection.tls_description,
            **fields,
        )

    # -- folders ------------------------------------------------------------------------

    @property
    def mailbox_id(self) -> int:
        assert self.identity is not None
        return self.identity.mailbox.id

    async def folder(self, name: str, *, trycreate: bool = False) -> FolderInfo:
        folder = await self.mail.folder(self.mailbox_id, name)
        if folder is None:
            code = writer.codes.TRYCREATE if trycreate else writer.codes.NONEXISTENT
            raise Refusal(f"no folder {name!r}", code=code)
        return folder

    def select(self, view: FolderView) -> None:
        self.deselect()
        self.view = view
        self.subscription = self.service.channel.subscribe(view.folder.id)
        self.subscription.waker = self.wake
        self.state = State.SELECTED

    def deselect(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        self.subscription = None
        self.view = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def selected(self) -> FolderView:
        if self.view is None:
            raise Refusal("no folder selected", bad=True)
        return self.view

    def writable(self) -> FolderView:
        view = self.selected()
        if view.readonly:
            raise Refusal("folder is read-only (EXAMINE)", code=writer.codes.READ_ONLY)
        return view

    # -- keeping the view in step ---------------------------------------------------------

    @property
    def behind(self) -> bool:
        """Another change was announced after what the view knows."""
        sub, view = self.subscription, self.view
        if sub is None or view is None:
            return False
        return sub.stale or sub.modseq > view.known_modseq

    async def catch_up(self, *, allow_expunge: bool, force: bool = False) -> None:
        """Pull changes when some were announced, then send what the client may see now."""
        view, sub = self.view, self.subscription
        if view is None or sub is None:
            return
        if force or self.behind:
            sub.stale = False
            changes = await self.mail.changes(view.folder.id, view.known_modseq)
            if changes.folder is None:
                self.send(writer.bye("the selected folder was deleted"))
                self.deselect()
                self.state = State.LOGOUT
                return
            view.apply(changes)
        if view.pending:
            self.send(*view.flush(allow_expunge=allow_expunge, condstore=self.condstore))

    def close(self) -> None:
        """Idempotent: the driver calls it however the connection ends."""
        self.deselect()
        self.state = State.LOGOUT
        if self.counted_identity is not None:
            counter = self.service.per_identity
            counter[self.counted_identity] -= 1
            if counter[self.counted_identity] <= 0:
                del counter[self.counted_identity]
            self.counted_identity = None
        for f in self.literal_files.values():
            f.close()
        self.literal_files.clear()


def _may_expunge(command: c.Command) -> bool:
    """RFC 3501 §7.4.1: no EXPUNGE response while answering FETCH, STORE or
    SEARCH by message number (their UID forms may)."""
    if isinstance(command, (c.Fetch, c.Store, c.Search)):
        return command.uid
    if isinstance(command, c.Copy):
        return command.uid
    return True


may_expunge = _may_expunge
