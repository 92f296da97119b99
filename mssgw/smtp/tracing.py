"""The trace record of one SMTP transaction step (SPEC TRACE-1), for every SMTP edge.

Who (certificate DN or authenticated identity, address), what (stage), the
envelope, the TLS parameters and the reply: never the content.  A trace that
cannot be written is logged; it never changes the reply already decided.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mssgw.errors import brief
from mssgw.policy.decision import Decision
from mssgw.smtp.received import TlsInfo
from mssgw.store import Store
from mssgw.store.traces import Category, TraceRecord

if TYPE_CHECKING:
    from mssgw.app import App
    from mssgw.smtp.session import ListenerEnv, Transaction

log = logging.getLogger(__name__)

RESULT = {"accept": "accepted", "tempfail": "deferred", "reject": "refused"}


def step_record(
    *,
    category: Category,
    action: str,
    decision: Decision,
    actor: str | None,
    peer_ip: str,
    tls: TlsInfo | None,
    sender: str | None,
    recipients: Sequence[str],
    message_id: str | None,
    size: int | None,
) -> TraceRecord:
    return TraceRecord(
        category=category,
        action=action,
        result=RESULT[decision.kind],
        actor=actor,
        peer_ip=peer_ip,
        tls=tls.describe() if tls is not None else None,
        sender=sender,
        recipients=",".join(recipients) or None,
        message_id=message_id,
        size=size,
        code=f"{decision.smtp_code} {decision.enhanced}",
        reason=decision.reason,
    )


async def write(store: Store, record: TraceRecord, peer_ip: str) -> None:
    try:
        await store.traces.add(record)
    except Exception as exc:  # the reply stands; the missing trace is logged
        log.error("%s: trace not written: %s", peer_ip, brief(exc))


class StepTraces:
    """The trace records of a session's steps; mixed into both SMTP edges' sessions.

    A session says which ``trace_category`` it writes and who the actor is
    (``trace_actor``: the peer's DN on port 25, the identity on submission).
    """

    trace_category: Category
    app: App
    env: ListenerEnv
    peer_ip: str
    tls: TlsInfo | None

    def trace_actor(self) -> str | None:
        raise NotImplementedError

    def _record(
        self,
        stage: str,
        decision: Decision,
        txn: Transaction,
        recipients: Sequence[str],
        message_id: str | None,
        size: int | None,
    ) -> TraceRecord:
        return step_record(
            category=self.trace_category,
            action=f"{self.env.name}.{stage}",
            decision=decision,
            actor=self.trace_actor(),
            peer_ip=self.peer_ip,
            tls=self.tls,
            sender=txn.sender,
            recipients=recipients,
            message_id=message_id,
            size=size,
        )

    async def _add_trace(self, record: TraceRecord) -> None:
        await write(self.app.store, record, self.peer_ip)
