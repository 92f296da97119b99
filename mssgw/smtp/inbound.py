"""Port 25: mail from the other MSSanté operators (SPEC FLOW-1, TLS-2, TRUST-6).

A session here is an ``EsmtpSession`` whose decisions come from
``mssgw.policy.inbound``:

* STARTTLS is mandatory before MAIL (``530 5.7.0``) and the handshake uses
  the operator context, which *requires* a client certificate chaining to
  the IGC-Santé anchors and not revoked: a peer without one, or with an
  expired, revoked or unknown-CA one, fails the handshake (a TLS alert; no
  SMTP code can be sent) and the failure is traced;
* MAIL FROM: the sender's domain must be on the liste blanche and the
  peer's certificate DN listed for it (``check_peer`` at the current time);
* RCPT TO: an active local mailbox of a hosted domain;
* end of DATA: the message, preceded by ``Return-Path`` and ``Received``
  (peer DN, TLS version and cipher), goes to every recipient's INBOX in one
  ``deliver`` call; ``250`` is sent only after it returned, i.e. once blob
  and rows are durable (SPEC STORE-2).  Any store failure is ``451 4.3.0``:
  a delivery is all or nothing, so nothing is half stored.  The DSN
  parameters (return path, ENVID, RET, each recipient's NOTIFY and ORCPT)
  are stored with the message rows, in the same transaction.

Every refusal, and every end of DATA, leaves a trace record (SPEC
TRACE-1): actor = peer DN, IP, TLS, envelope, Message-ID, size, code and
reason, never content.  An accepted message's record is committed with the
delivery itself (one commit per message, not two).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography import x509

from mssgw.address import domain_of
from mssgw.errors import brief
from mssgw.policy.decision import Decision
from mssgw.policy.inbound import (
    check_recipient,
    check_recipient_count,
    check_sender,
    delivered,
    store_unavailable,
)
from mssgw.policy.size import too_big
from mssgw.smtp import tracing
from mssgw.smtp.data import DataProblem
from mssgw.smtp.dsn import wants_notice
from mssgw.smtp.dsn_params import MailArgument, RcptArgument
from mssgw.smtp.notices import Delivered, header_block, send_delivered
from mssgw.smtp.received import received, return_path
from mssgw.smtp.session import (
    DATA_PROBLEMS,
    DataOutcome,
    EsmtpSession,
    ListenerEnv,
    Transaction,
    describe_tls_error,
)
from mssgw.store.delivery import Envelope, LocalTarget
from mssgw.store.traces import TraceRecord

if TYPE_CHECKING:
    import asyncio

    from mssgw.app import App

log = logging.getLogger(__name__)

#: Seconds the set of hosted domains is cached (domains change by operator action).
HOSTED_TTL = 10.0
#: Seconds a mailbox's state is cached for RCPT.  A lookup through the async ORM
#: costs more than the rest of a transaction; a mailbox suspended (or created)
#: less than this ago may still be accepted (refused) for that long.  Delivery
#: itself re-checks the state in its transaction, so a suspended mailbox never
#: gets mail: the peer gets 451 and retries.
MAILBOX_TTL = 5.0
MAILBOX_CACHE_MAX = 10_000
#: Seconds the listener reuses its verdict on a peer chain for a sender domain:
#: a peer sends many messages from one domain, on one connection or on many
#: (an operator's MTA opens a connection per message or a few at once), and
#: validating the chain and CRL costs about 0.4 ms.  Never beyond the leaf's
#: expiry, and a new liste blanche or CRL set means a new verdict.
SENDER_TTL = 30.0
#: Verdicts kept at most (peer chains x sender domains); all dropped when full.
VERDICT_CACHE_MAX = 4096
_Verdict = tuple[float, object, object, Decision]


class InboundService:
    """What port-25 sessions share: the app, and a small cache of hosted domains."""

    def __init__(self, app: App, env: ListenerEnv) -> None:
        self.app = app
        self.env = env
        self._hosted: frozenset[str] = frozenset()
        self._hosted_at = -HOSTED_TTL
        self._states: dict[str, tuple[float, str | None]] = {}
        #: (peer chain, sender domain) -> (when, liste, TLS generation, verdict).
        self._verdicts: dict[tuple[tuple[x509.Certificate, ...], str], _Verdict] = {}

    def sender_verdict(
        self, sender: str, chain: Sequence[x509.Certificate], now: datetime
    ) -> Decision:
        """``check_sender`` for this peer chain and sender, reused for ``SENDER_TTL``
        across the listener's connections (keyed by the certificates themselves)."""
        trust = self.app.trust
        if trust is None:  # App.start refuses a TLS listener without a trust space
            return store_unavailable()
        key = (tuple(chain), sender.rpartition("@")[2].lower())
        liste, generation = trust.liste, trust.operator_tls.generation
        cached = self._verdicts.get(key)
        clock = time.monotonic()
        if (
            cached is not None
            and clock - cached[0] < SENDER_TTL
            and cached[1] is liste
            and cached[2] == generation
            and (not chain or now < chain[0].not_valid_after_utc)
        ):
            return cached[3]
        decision = check_sender(sender, chain, liste, now, trust.anchors, trust.crls)
        if len(self._verdicts) >= VERDICT_CACHE_MAX:
            self._verdicts.clear()
        self._verdicts[key] = (clock, liste, generation, decision)
        return decision

    async def hosted_domains(self) -> frozenset[str]:
        now = time.monotonic()
        if now - self._hosted_at > HOSTED_TTL:
            self._hosted = frozenset(await self.app.store.mailboxes.hosted_domains())
            self._hosted_at = now
        return self._hosted

    async def mailbox_state(self, address: str) -> str | None:
        """The mailbox's lifecycle state (``None``: no such mailbox), cached briefly."""
        key = address.lower()
        now = time.monotonic()
        cached = self._states.get(key)
        if cached is not None and now - cached[0] < MAILBOX_TTL:
            return cached[1]
        mailbox = await self.app.store.mailboxes.find(key)
        state = mailbox.state if mailbox is not None else None
        if len(self._states) >= MAILBOX_CACHE_MAX:
            self._states.clear()
        self._states[key] = (now, state)
        return state

    def primary_domain(self) -> str | None:
        domains = self.app.settings.gateway.domains
        return domains[0] if domains else None


class InboundSession(tracing.StepTraces, EsmtpSession):
    """One connection from another operator's MTA."""

    trace_category = "transport"

    def __init__(self, service: InboundService, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(service.env, loop)
        self.service = service
        self.app = service.app

    # ------------------------------------------------------------------ policy

    async def check_mail(self, argument: MailArgument) -> Decision:
        return self.service.sender_verdict(argument.sender, self.peer_chain, datetime.now(UTC))

    async def check_rcpt(self, argument: RcptArgument) -> Decision:
        decision = check_recipient_count(len(self.txn.recipients), self.env.limits.max_recipients)
        if not decision.ok:
            return decision
        address = self._local_address(argument.recipient)
        try:
            hosted = await self.service.hosted_domains()
            state = None
            if domain_of(address) in hosted:
                state = await self.service.mailbox_state(address)
        except Exception as exc:  # database down: retry later, never a 5xx
            log.error("%s: recipient lookup failed: %s", self.peer_ip, brief(exc))
            return store_unavailable()
        return check_recipient(address, hosted, state)

    def _local_address(self, recipient: str) -> str:
        if recipient == "postmaster":  # RFC 5321 §4.1.1.3 "<Postmaster>"
            primary = self.service.primary_domain()
            return f"postmaster@{primary}" if primary else recipient
        return recipient

    # ------------------------------------------------------------------ data

    def trace_headers(self) -> bytes:
        txn = self.txn
        assert self.session is not None and txn.sender is not None
        single = txn.recipients[0].address if len(txn.recipients) == 1 else None
        return return_path(txn.sender) + received(
            helo=str(self.session.host_name or ""),
            peer_ip=self.peer_ip,
            by=self.hostname,
            protocol=self.protocol_name,
            ident=txn.id,
            when=datetime.now(UTC),
            tls=self.tls,
            recipient=single,
        )

    async def end_of_data(self, outcome: DataOutcome) -> Decision:
        txn = outcome.transaction
        if outcome.problem is DataProblem.TOO_BIG:
            decision = too_big(self.env.limits.max_message_size)
        elif outcome.problem is not None:
            decision = DATA_PROBLEMS[outcome.problem]
        elif outcome.spool_error is not None:
            log.error("%s: cannot spool message: %s", self.peer_ip, outcome.spool_error.strerror)
            decision = store_unavailable()
        else:
            # The DSN parameters, when the peer sent any, go with each copy (for
            # the "delivered" DSN of RFC 3461 §6.2.1), and the trace record of the
            # accepted message with the delivery: one transaction, one commit.
            keep = _has_dsn(txn)
            decision = delivered(txn.id)
            trace = self._record(
                "data", decision, txn, txn.addresses, outcome.facts.message_id, outcome.size
            )
            try:
                await self.app.store.messages.deliver(
                    outcome.spool.source(),  # type: ignore[arg-type]
                    [
                        LocalTarget(
                            self._local_address(r.address),
                            notify=r.params.notify if keep else None,
                            orcpt=r.params.orcpt if keep else None,
                            keep_envelope=keep,
                        )
                        for r in txn.recipients
                    ],
                    envelope=Envelope(txn.sender or "", txn.mail.envid, txn.mail.ret),
                    trace=trace,
                )
            except Exception as exc:  # StoreError, or anything from the DB driver / disk
                log.error("%s: delivery of %s failed: %s", self.peer_ip, txn.id, brief(exc))
                decision = store_unavailable()
            else:
                if keep and txn.sender:
                    await self._delivered_notices(outcome)
                return decision
        size = outcome.size if outcome.problem is None else outcome.received
        record = self._record("data", decision, txn, txn.addresses, outcome.facts.message_id, size)
        await self._add_trace(record)
        return decision

    async def _delivered_notices(self, outcome: DataOutcome) -> None:
        """RFC 3461 §6.2.1: we made the final delivery; NOTIFY=SUCCESS asks for a report.

        The sender is at another operator: the report is queued back to it
        through the relay (empty envelope sender, never reported on itself).
        """
        txn = outcome.transaction
        delivered = [
            Delivered(self._local_address(r.address), r.params.notify, r.params.orcpt)
            for r in txn.recipients
        ]
        if not any(wants_notice(d.notify, "delivered", sender=txn.sender or "") for d in delivered):
            return
        relay = self.app.relay
        await send_delivered(
            self.app.store,
            reporting_mta=self.hostname,
            sender=txn.sender or "",
            recipients=delivered,
            envid=txn.mail.envid,
            ret=txn.mail.ret,
            head=await header_block(outcome.spool.source()),  # type: ignore[arg-type]
            message_id=outcome.facts.message_id,
            wake=relay.wake if relay is not None else None,
        )

    # ------------------------------------------------------------------ traces

    async def refused(self, stage: str, decision: Decision, subject: str | None) -> None:
        txn = self.txn
        recipients = [subject] if stage == "rcpt" and subject else []
        if stage == "mail":
            txn = Transaction(id=txn.id, sender=subject)
        await self._add_trace(self._record(stage, decision, txn, recipients, None, None))

    async def tls_failed(self, error: BaseException) -> None:
        reason = f"TLS handshake failed: {describe_tls_error(error)}"
        await self._add_trace(
            TraceRecord(
                category="transport",
                action=f"{self.env.name}.starttls",
                result="refused",
                actor=None,
                peer_ip=self.peer_ip,
                reason=reason,
            )
        )

    def trace_actor(self) -> str | None:
        return self.peer_dn


def _has_dsn(txn: Transaction) -> bool:
    return bool(
        txn.mail.envid
        or txn.mail.ret
        or any(r.params.notify or r.params.orcpt for r in txn.recipients)
    )
