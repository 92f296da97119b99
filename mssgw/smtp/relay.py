"""The relay worker: outbound delivery to other operators (SPEC FLOW-3, FLOW-4, TLS-2).

Each worker slot delivers one *group* of due queue rows at a time (same
message, same envelope, same recipient domain: one SMTP transaction with
several RCPTs; one claim transaction takes groups for every free slot and as
many ahead), then:

1. fails closed: without a verified liste blanche nothing is relayed
   (deferred); a recipient domain not on the list is failed at once
   (5.7.1), it would never be accepted by a trusted peer;
2. finds the hops (static route, MX, implicit MX; ``smtp.mx``);
3. tries them in order (``smtp.client.ConnectionPool.deliver``): a kept
   connection whose peer is bound to the recipient domain under the trust
   state in use, else a new one: STARTTLS with our certificate, peer binding
   to the recipient domain before MAIL (TRUST-6); DSN parameters passed on
   when advertised, SIZE respected, PIPELINING used when offered;
4. records one result per recipient (``store.queue.record``): delivered,
   failed, or deferred on the written schedule (``policy.retry``), and
   traces every attempt (TRACE-1, never content);
5. sends the DSNs that are due (``smtp.dsn``): failure, delay, and
   "relayed" success when the sender asked NOTIFY=SUCCESS and the next hop
   does not speak DSN (RFC 3461 §5.2.2: we are then the last MTA able to
   report).  When the next hop speaks DSN, NOTIFY is passed on and the
   success report is its job (RFC 3461 §5.2.1).

Delivery is at least once: a connection lost after the final dot is
retried, as RFC 5321 §6.1 and RFC 1047 accept.  A DSN is sent after the row
is recorded, and only by the worker that still held the row's lease.

Wiring: ``RelayWorker.for_app(app)``, ``await worker.start()`` after the
listeners, ``await worker.stop()`` before closing the store (it also closes
the kept connections); ``wake()`` after queueing makes it look at once
instead of at the next poll.  ``run_once`` outside the daemon closes its
connections when it returns.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

from mssgw.aio import cancel_and_wait
from mssgw.policy.decision import Decision
from mssgw.policy.retry import RetrySchedule, after_temporary_failure
from mssgw.smtp.client import (
    Attempt,
    ConnectionPool,
    PeerBinding,
    Recipient,
    Result,
    Transaction,
)
from mssgw.smtp.dsn import Action, DsnReport, RecipientReport, build_dsn, wants_notice
from mssgw.smtp.mx import MxResolver, RouteError
from mssgw.smtp.notices import route_report
from mssgw.store import Store
from mssgw.store.delivery import Lease, header_meta
from mssgw.store.models import QueueEntry
from mssgw.store.queue import Outcome
from mssgw.store.timeutil import now
from mssgw.store.traces import TraceRecord
from mssgw.text import is_digits
from mssgw.trust.binding import check_peer

if TYPE_CHECKING:
    import dns.asyncresolver

    from mssgw.app import App
    from mssgw.config import Settings
    from mssgw.runtime import TrustSpace

log = logging.getLogger(__name__)

#: RFC 5321 §4.5.3.1.8: servers must accept at least 100 recipients per transaction.
MAX_RCPTS = 100
#: Connections to a next hop are kept this long without use (RFC 5321 §4.5.3.2.7
#: gives servers 5 minutes; Postfix keeps them 2 s to 100 s) ...
POOL_IDLE_TIMEOUT = 30.0
#: ... and carry at most this many transactions (Postfix: 100).
POOL_MAX_TRANSACTIONS = 100
#: A group claimed ahead that waited this long for a slot is given back: its lease
#: (the attempt's budget + 60 s) must still cover a whole attempt when it starts.
_READY_MAX_WAIT = 30.0
#: Messages up to this size are read once into memory for the attempt.
_IN_MEMORY = 256 * 1024


def _header_block(source: BinaryIO) -> bytes:
    """The header block of a message (at most 1 MiB), and the file closed."""
    with source as f:
        head = bytearray()
        while line := f.readline(65536):
            head += line
            if line in (b"\r\n", b"\n") or len(head) > 1 << 20:
                break
        return bytes(head)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


@dataclass
class RunReport:
    """What one ``run_once`` did (for tests, logs and ``mssgw queue retry``)."""

    groups: int = 0
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    dsns: int = 0
    ids: list[int] = field(default_factory=list)

    def add(self, other: RunReport) -> None:
        self.groups += other.groups
        self.delivered += other.delivered
        self.deferred += other.deferred
        self.failed += other.failed
        self.dsns += other.dsns
        self.ids += other.ids


@dataclass(frozen=True)
class _Message:
    size: int
    eight_bit: bool
    message_id: str | None
    #: The bytes, when at most ``_IN_MEMORY`` (else streamed from the blob).
    content: bytes | None = None


class Notifier:
    """Builds and sends DSNs about queue rows (worker and ``mssgw queue fail``).

    The report goes to the original sender: into its INBOX when it is one of
    our mailboxes, else queued to it with an empty envelope sender (so no
    DSN is ever sent about it, RFC 3461 §6.1).
    """

    def __init__(self, settings: Settings, store: Store, *, actor: str) -> None:
        self.settings = settings
        self.store = store
        self.actor = actor

    async def send(
        self,
        rows: Sequence[QueueEntry],
        action: Action,
        results: Sequence[RecipientReport],
        *,
        at: datetime,
    ) -> bool:
        """One report about ``rows`` (same message and sender); False when not sent."""
        first = rows[0]
        if not first.sender:
            return False
        original = await self._original(first.blob_id, first.ret, action)
        meta = header_meta(io.BytesIO(original))
        report = DsnReport(
            reporting_mta=self.settings.gateway.hostname,
            sender=first.sender,
            recipients=list(results),
            date=at,
            envid=first.envid,
            ret=first.ret,
            arrival_date=first.created_at,
            message_id=meta.message_id,
        )
        data = build_dsn(report, original)
        where = await self._deliver(first.sender, data)
        ids = ", ".join(str(r.id) for r in rows)
        await self.store.traces.add(
            TraceRecord(
                category="transport",
                action="relay.dsn",
                result="sent" if where else "dropped",
                actor=self.actor,
                sender="",
                recipients=first.sender,
                message_id=meta.message_id,
                size=len(data),
                code=results[0].status,
                reason=f"{action} report for queue {ids} ({where or 'sender mailbox unusable'})",
            )
        )
        for row in rows:
            await self.store.queue.note(
                row.id,
                "dsn",
                actor=self.actor,
                status=action,
                detail=f"{action} report {'sent' if where else 'dropped'} to {first.sender}",
            )
        return where is not None

    async def _original(self, blob_id: str, ret: str | None, action: Action) -> bytes:
        """The bytes the report needs: all of them only for a failure with RET=FULL."""
        if action == "failed" and (ret or "").upper() == "FULL":
            return await self.store.contents.read_one(blob_id)
        source = await self.store.contents.open(blob_id)
        return await asyncio.to_thread(_header_block, source)

    async def _deliver(self, sender: str, data: bytes) -> str | None:
        return await route_report(self.store, sender, data)


class RelayWorker:
    """Delivers due queue rows; ``start``/``stop`` in the daemon, ``run_once`` on demand."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        trust: TrustSpace | None,
        *,
        resolver: dns.asyncresolver.Resolver | None = None,
        name: str | None = None,
        clock: Callable[[], datetime] = now,
        smtp_port: int = 25,
        pool: ConnectionPool | None = None,
    ) -> None:
        relay = settings.relay
        self.settings = settings
        self.store = store
        self.trust = trust
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:04x}"
        self.mx = MxResolver(relay.routes, resolver, port=smtp_port)
        self.schedule = RetrySchedule.of(
            relay.retry_schedule, relay.delay_notice_after, relay.give_up_after
        )
        # A group's whole attempt (every hop) is bounded by its lease, so a
        # crashed node's rows come back after at most this long.
        self.budget = float(relay.connect_timeout + 6 * relay.command_timeout)
        self.lease = timedelta(seconds=self.budget + 60)
        self.notifier = Notifier(settings, store, actor=f"relay {self.name}")
        #: Open, verified connections to next hops, shared by the groups in flight.
        self.pool = pool or ConnectionPool(
            idle_timeout=POOL_IDLE_TIMEOUT,
            max_transactions=POOL_MAX_TRANSACTIONS,
            max_idle=max(1, relay.workers),
        )
        #: Claim transactions run (empty ones included), for tests and benchmarks.
        self.claims = 0
        self._horizon: tuple[object, datetime | None] | None = None
        self._task: asyncio.Task[None] | None = None
        #: Groups queued and leased to this worker by a delivery (``hand``), with
        #: the (event loop) time they were leased.
        self._handed: collections.deque[tuple[float, list[QueueEntry], _Message | None]] = (
            collections.deque()
        )
        self._wake = asyncio.Event()  # something was queued
        self._kick = asyncio.Event()  # the dispatcher has something to look at
        self._stopping = asyncio.Event()

    @classmethod
    def for_app(cls, app: App, **kw: Any) -> RelayWorker:
        return cls(app.settings, app.store, app.trust, **kw)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._loop(), name="mssgw-relay")

    async def stop(self, grace: float = 30.0) -> None:
        """Stop claiming; let deliveries in flight finish for ``grace`` seconds, then cancel.

        Why not cancel at once: a transaction cut after the server's final
        ``250`` but before the row is recorded would be delivered twice.
        Cancelled groups give their leases back, so another node or the next
        start takes them at once.  Kept connections are closed (``QUIT``).
        """
        self._stopping.set()
        self._wake.set()
        self._kick.set()
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.shield(task)
            await cancel_and_wait(task)
        handed = [r.id for _, rows, _ in self._handed for r in rows]
        self._handed.clear()
        if handed:
            with contextlib.suppress(Exception):
                await self.store.queue.release_lease(self.name, handed)
        await self.pool.close()

    def fresh_lease(self) -> Lease | None:
        """A lease for rows about to be queued, when this worker runs as the daemon.

        A delivery that inserts its queue rows with it hands them over with
        ``hand`` instead of calling ``wake``: no claim transaction is needed
        for fresh mail.  ``None``: not running, queue them unleased.
        """
        if self._task is None or self._task.done() or self._stopping.is_set():
            return None
        return Lease(self.name, self.lease)

    def hand(
        self, rows: Sequence[QueueEntry], content: bytes | None, message_id: str | None
    ) -> None:
        """Deliver ``rows``, just queued under ``fresh_lease()``, without claiming them.

        They are grouped as a claim would group them (one message: same
        envelope; one recipient domain per group, at most ``MAX_RCPTS``).
        ``content``: the message's bytes, when at hand (saves reading the blob).
        """
        message = None
        if content is not None and len(content) <= _IN_MEMORY:
            message = _Message(len(content), not content.isascii(), message_id, content)
        by_domain: dict[str, list[QueueEntry]] = {}
        for row in rows:
            by_domain.setdefault(domain_of(row.recipient), []).append(row)
        # The time of the lease, not of the pick-up: a group that waited too long
        # is given back before its lease could end during the attempt.
        leased = asyncio.get_running_loop().time()
        for group in by_domain.values():
            for i in range(0, len(group), MAX_RCPTS):
                self._handed.append((leased, group[i : i + MAX_RCPTS], message))
        self._kick.set()

    def wake(self) -> None:
        """Something was queued: look now rather than at the next poll.

        Cheap and coalescing: any number of calls while the worker is busy
        lead to one more claim, made as soon as a delivery slot is free.
        """
        self._wake.set()
        self._kick.set()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._run(None, None, daemon=True)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or an unavailable store must not kill the relay
                log.exception("relay run failed; retrying at the next poll")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.relay.poll_interval):
                        await self._stopping.wait()

    # ------------------------------------------------------------------ one pass

    async def run_once(self, *, ids: Sequence[int] | None = None) -> RunReport:
        """Process every due row now (``ids``: only those), ``workers`` groups at a time."""
        report = RunReport()
        try:
            await self._run(report, ids, daemon=False)
        finally:
            if self._task is None:  # not the daemon: leave no connection open
                await self.pool.close()
        return report

    async def _run(
        self, report: RunReport | None, ids: Sequence[int] | None, *, daemon: bool
    ) -> None:
        """Claim groups into free delivery slots until nothing is due.

        A slot is busy from the start of a group to the end of its attempt
        (the SMTP dialogue); recording the results and sending DSNs happen
        after the slot is given back.  One claim transaction fills every free
        slot and claims as many groups ahead, which start as slots free up
        (or are given back if they waited too long); a claim that comes back
        short means the queue is drained, and the next one waits for a free
        slot *and* a reason to look again:
        ``wake()`` (something was queued) or, in the daemon, the poll
        interval (retries coming due).  Without ``daemon``, returns once
        drained and every group is settled.
        """
        loop = asyncio.get_running_loop()
        slots = max(1, self.settings.relay.workers)
        poll = float(self.settings.relay.poll_interval)
        tasks: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            self._kick.set()

        errors: list[Exception] = []
        busy = [0]  # groups started whose attempt is not over
        #: Claimed (or handed) groups waiting for a slot, with the time they were
        #: claimed and, for handed ones, the message when in memory.
        ready: collections.deque[tuple[float, list[QueueEntry], _Message | None]] = (
            collections.deque()
        )
        more = True  # rows may be due: claim as soon as a slot is free
        next_poll = loop.time() + poll
        try:
            while not self._stopping.is_set():
                if not more and self._wake.is_set():
                    more = True
                while daemon and self._handed:
                    ready.append(self._handed.popleft())
                while ready and busy[0] < slots:
                    claimed, rows, message = ready.popleft()
                    if loop.time() - claimed > _READY_MAX_WAIT:
                        # its lease must still cover a whole attempt: give it back
                        await self.store.queue.release_lease(self.name, [r.id for r in rows])
                        more = True
                        continue
                    busy[0] += 1
                    task = asyncio.create_task(self._group(report, rows, errors, busy, message))
                    tasks.add(task)
                    task.add_done_callback(finished)
                free = slots - busy[0]
                if more and free > 0 and not ready and len(tasks) < 4 * slots:
                    # the free slots, and as many groups ahead: one claim per ``slots`` groups
                    wanted = free + slots
                    self._wake.clear()  # a wake() from now on means "look again"
                    self.claims += 1
                    groups = await self.store.queue.claim_groups(
                        self.name,
                        lease=self.lease,
                        at=self.clock(),
                        ids=ids,
                        limit=MAX_RCPTS,
                        groups=wanted,
                    )
                    more = len(groups) == wanted
                    if not more:
                        next_poll = loop.time() + poll
                    ready.extend((loop.time(), rows, None) for rows in groups)
                    continue
                if not daemon and not tasks:
                    break
                timeout: float | None = None
                if daemon and not more:  # drained: a wake(), the poll, idle connections
                    timeout = max(0.0, next_poll - loop.time())
                    expiry = self.pool.next_expiry()
                    if expiry is not None:
                        timeout = min(timeout, expiry + 0.05)
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._kick.wait()  # a slot freed, a group done, a wake()
                self.pool.expire()
                if daemon and not more and loop.time() >= next_poll:
                    more = True
        except asyncio.CancelledError:
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._give_back(ready)
            raise
        except Exception:  # a claim failed (store unavailable): the groups in flight go on
            await self._give_back(ready)
            await _settled(tasks)
            raise
        await self._give_back(ready)
        await _settled(tasks)  # stopping: the groups in flight finish (``stop`` bounds it)
        if errors and not daemon:
            raise errors[0]

    async def _give_back(
        self, ready: collections.deque[tuple[float, list[QueueEntry], _Message | None]]
    ) -> None:
        """Release the leases of claimed groups never started (stopping)."""
        ids = [r.id for _, rows, _ in ready for r in rows]
        ready.clear()
        if ids:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.queue.release_lease(self.name, ids))

    async def _group(
        self,
        report: RunReport | None,
        rows: list[QueueEntry],
        errors: list[Exception],
        busy: list[int],
        message: _Message | None = None,
    ) -> None:
        """One group: attempt, give the slot back, settle."""
        slot = [True]

        def attempted() -> None:
            if slot[0]:
                slot[0] = False
                busy[0] -= 1
                self._kick.set()

        try:
            done = await self._process(rows, attempted, message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self.store.queue.release_lease(self.name, [r.id for r in rows])
                )
            raise
        except Exception as exc:  # the rows stay leased until the lease ends
            ids = ", ".join(str(r.id) for r in rows)
            log.exception("relay: delivery of queue %s failed", ids)
            errors.append(exc)
            return
        finally:
            attempted()
        if report is not None:
            report.add(done)

    async def _process(
        self,
        rows: list[QueueEntry],
        attempted: Callable[[], None] = lambda: None,
        message: _Message | None = None,
    ) -> RunReport:
        domain = domain_of(rows[0].recipient)
        attempt: Attempt | None = None
        traces: list[TraceRecord] = []
        try:
            async with asyncio.timeout(self.budget):
                results, attempt = await self._attempt(rows, domain, traces, message)
        except TimeoutError:
            reason = f"delivery to {domain} took longer than {self.budget:.0f} s"
            results = [Result("deferred", "4.4.7", reason)] * len(rows)
        attempted()
        return await self._settle(rows, results, attempt, traces)

    async def _attempt(
        self,
        rows: list[QueueEntry],
        domain: str,
        traces: list[TraceRecord],
        message: _Message | None = None,
    ) -> tuple[list[Result], Attempt | None]:
        """Results per row, and the attempt that produced them (``None``: no connection).

        The trace records of the attempt are appended to ``traces``.
        """
        liste = self.trust.liste if self.trust is not None else None
        if self.trust is None or liste is None:
            reason = "no verified liste blanche in use: nothing is relayed until one is loaded"
            return self._no_hop(rows, Result("deferred", "4.7.0", reason), traces)
        if not liste.dns_for(domain):
            reason = f"domain {domain} is not on the MSSante liste blanche"
            return self._no_hop(rows, Result("failed", "5.7.1", reason), traces)
        try:
            hops = await self.mx.resolve(domain)
        except RouteError as exc:
            result = Result("failed" if exc.permanent else "deferred", exc.status, exc.reason)
            return self._no_hop(rows, result, traces)
        if message is None:
            message = await self._load(rows[0].blob_id)
        trust = self.trust
        transaction = Transaction(
            sender=rows[0].sender,
            recipients=[Recipient(r.recipient, r.notify, r.orcpt) for r in rows],
            size=message.size,
            open_message=lambda: self.store.blobs.open(rows[0].blob_id),
            envid=rows[0].envid,
            ret=rows[0].ret,
            eight_bit=message.eight_bit,
            content=message.content,
        )
        at = self.clock()

        def check(chain: list[Any]) -> Decision:
            return check_peer(chain, domain, liste, at, trust.anchors, trust.crls)

        # TRUST-6 on kept connections: a decision holds only under the trust
        # state it was taken with (this list, these anchors and CRLs).
        generation = trust.operator_tls.generation
        binding = PeerBinding(
            domain,
            check,
            at,
            key=(liste.sha256, id(liste), id(trust.operator_tls), generation),
            horizon=self._trust_horizon(trust, generation),
        )
        attempt: Attempt | None = None
        for hop in hops:
            attempt = await self.pool.deliver(
                hop,
                transaction,
                binding,
                tls=trust.relay_tls.current,
                helo=self.settings.gateway.hostname,
                connect_timeout=self.settings.relay.connect_timeout,
                command_timeout=self.settings.relay.command_timeout,
            )
            self._trace_attempt(rows, attempt, message, traces)
            if attempt.hop_error is None:
                return attempt.results, attempt
        assert attempt is not None and attempt.hop_error is not None
        return [attempt.hop_error] * len(rows), attempt

    def _trust_horizon(self, trust: TrustSpace, generation: int) -> datetime | None:
        """When the anchors or CRLs in use stop being good by themselves (cached)."""
        key = (id(trust.operator_tls), generation)
        if self._horizon is None or self._horizon[0] != key:
            ends = [a.not_valid_after_utc for a in trust.anchors]
            ends += [c.next_update_utc for c in trust.crls or () if c.next_update_utc]
            self._horizon = (key, min(ends) if ends else None)
        return self._horizon[1]

    def _no_hop(
        self, rows: list[QueueEntry], result: Result, traces: list[TraceRecord]
    ) -> tuple[list[Result], Attempt | None]:
        traces.append(
            TraceRecord(
                category="transport",
                action="relay",
                result=result.kind,
                actor=f"relay {self.name}",
                sender=rows[0].sender,
                recipients=",".join(r.recipient for r in rows),
                code=result.status,
                reason=result.reason,
            )
        )
        return [result] * len(rows), None

    async def _load(self, blob_id: str) -> _Message:
        """The message of a queue row: from its blob row when inline (one query),
        else from its file in a worker thread."""
        data = await self.store.contents.inline(blob_id)
        if data is None:
            return await asyncio.to_thread(self._message, blob_id)
        meta = header_meta(io.BytesIO(data))
        return _Message(len(data), not data.isascii(), meta.message_id, data)

    def _message(self, blob_id: str) -> _Message:
        """Size, 8-bit content (for BODY=8BITMIME), Message-ID and the bytes of a
        small message, in a worker thread (one read of the blob)."""
        eight_bit = False
        size = 0
        with self.store.blobs.open(blob_id) as f:
            first = f.read(_IN_MEMORY + 1)
            if len(first) <= _IN_MEMORY:
                meta = header_meta(io.BytesIO(first))
                return _Message(len(first), not first.isascii(), meta.message_id, first)
            chunk = first
            while chunk:
                size += len(chunk)
                eight_bit = eight_bit or not chunk.isascii()
                chunk = f.read(1 << 20)
        meta = header_meta(self.store.blobs.open(blob_id))
        return _Message(size, eight_bit, meta.message_id)

    def _trace_attempt(
        self, rows: list[QueueEntry], attempt: Attempt, message: _Message, traces: list[TraceRecord]
    ) -> None:
        """TRACE-1: one record per recipient result, or one for a hop that failed."""
        common: dict[str, Any] = {
            "category": "transport",
            "action": "relay",
            "actor": attempt.peer_dn or f"{attempt.hop}",
            "peer_ip": attempt.peer_ip,
            "tls": attempt.tls,
            "sender": rows[0].sender,
            "message_id": message.message_id,
            "size": message.size,
        }
        if attempt.hop_error is not None:
            error = attempt.hop_error
            traces.append(
                TraceRecord(
                    **common,
                    recipients=",".join(r.recipient for r in rows),
                    result="peer-refused" if attempt.peer_refused else error.kind,
                    code=error.status,
                    reason=error.reason,
                )
            )
            return
        for row, result in zip(rows, attempt.results, strict=True):
            traces.append(
                TraceRecord(
                    **common,
                    recipients=row.recipient,
                    result=result.kind,
                    code=_code(result),
                    reason=result.reason,
                )
            )

    # ------------------------------------------------------------------ results

    async def _settle(
        self,
        rows: list[QueueEntry],
        results: list[Result],
        attempt: Attempt | None,
        traces: Sequence[TraceRecord] = (),
    ) -> RunReport:
        at = self.clock()
        report = RunReport(groups=1, ids=[r.id for r in rows])
        outcomes: list[tuple[int, Outcome]] = []
        notices: dict[Action, list[tuple[QueueEntry, RecipientReport]]] = {}
        for row, result in zip(rows, results, strict=True):
            outcome, notice = self._judge(row, result, attempt, at)
            outcomes.append((row.id, outcome))
            setattr(report, outcome.kind, getattr(report, outcome.kind) + 1)
            if notice is not None:
                notices.setdefault(notice.action, []).append((row, notice))
        # The rows and the traces of the attempt, together: one unit, one commit.
        applied = await self.store.queue.record(self.name, outcomes, at=at, traces=traces)
        for action, items in notices.items():
            mine = [(row, rr) for row, rr in items if row.id in applied]
            if mine:
                sent = await self.notifier.send(
                    [row for row, _ in mine], action, [rr for _, rr in mine], at=at
                )
                report.dsns += int(sent)
        return report

    def _judge(
        self, row: QueueEntry, result: Result, attempt: Attempt | None, at: datetime
    ) -> tuple[Outcome, RecipientReport | None]:
        """The row's new state and the DSN it calls for (pure but for the schedule)."""
        hop = attempt.hop.name if attempt is not None else None
        remote = hop if result.reply else None
        if result.kind == "delivered":
            outcome = Outcome("delivered", result.status, None, hop, result.reply)
            next_hop_reports = attempt is not None and attempt.dsn
            if not next_hop_reports and wants_notice(row.notify, "relayed", sender=row.sender):
                # RFC 3461 §5.2.2: the next hop has no DSN and NOTIFY has SUCCESS.
                return outcome, self._report(row, "relayed", result, hop, at)
            return outcome, None
        if result.kind == "failed":
            outcome = Outcome("failed", result.status, result.reason, remote, result.reply)
            if wants_notice(row.notify, "failed", sender=row.sender):
                return outcome, self._report(row, "failed", result, remote, at)
            return outcome, None
        verdict = after_temporary_failure(
            self.schedule,
            queued_at=row.created_at,
            attempts=row.attempts + 1,
            delay_notified=row.delay_notified,
            now=at,
        )
        if verdict.give_up or verdict.next_attempt_at is None:
            days = self.schedule.give_up_after / 86400
            reason = f"gave up after {days:g} day(s) of attempts; last error: {result.reason}"
            outcome = Outcome("failed", result.status, reason, remote, result.reply)
            if wants_notice(row.notify, "failed", sender=row.sender):
                return outcome, self._report(row, "failed", result, remote, at, reason)
            return outcome, None
        outcome = Outcome(
            "deferred",
            result.status,
            result.reason,
            remote,
            result.reply,
            next_attempt_at=verdict.next_attempt_at,
            delay_notified=verdict.notify_delay,
        )
        if verdict.notify_delay and wants_notice(row.notify, "delayed", sender=row.sender):
            return outcome, self._report(row, "delayed", result, remote, at)
        return outcome, None

    def _report(
        self,
        row: QueueEntry,
        action: Action,
        result: Result,
        remote: str | None,
        at: datetime,
        reason: str | None = None,
    ) -> RecipientReport:
        """RFC 3464 §2.3 fields for one row: the server's reply as ``smtp`` diagnostic
        when it answered, else our reason as ``X-Mssgw``."""
        status = result.status
        if action in ("relayed", "delivered") and not status.startswith("2"):
            status = "2.0.0"
        return RecipientReport(
            final_recipient=row.recipient,
            action=action,
            status=status,
            reason=reason or result.reason,
            original_recipient=row.orcpt,
            remote_mta=remote,
            diagnostic=result.reply or result.reason,
            diagnostic_type="smtp" if result.reply else "X-Mssgw",
            last_attempt=at,
            will_retry_until=self.schedule.deadline(row.created_at),
        )


async def _settled(tasks: set[asyncio.Task[None]]) -> None:
    """Wait for ``tasks``; if cancelled meanwhile, cancel them (they give their leases back)."""
    if not tasks:
        return
    try:
        await asyncio.gather(*tasks, return_exceptions=True)
    except asyncio.CancelledError:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _code(result: Result) -> str:
    """Trace ``code``: the reply code and status when the server answered, else the status."""
    if result.reply and is_digits(result.reply[:3]):
        return f"{result.reply[:3]} {result.status}"
    return result.status
