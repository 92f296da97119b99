"""Submission: our own users send mail (RFC 6409; SPEC FLOW-2, FLOW-4, FLOW-6, PAT-1..4,
AUTH-2..4, TLS-3, TRACE-1, STORE-2).

Two listeners share this session: ``submission`` (port 587, STARTTLS) and
``submissions`` (port 465, TLS from the first byte, RFC 8314).  A session is
an ``EsmtpSession`` (the ESMTP dialogue shared with port 25: pipelining,
DSN parameters, the DATA reader and spool, limits) whose decisions are:

* **TLS first.** Before STARTTLS only EHLO/HELO/STARTTLS/NOOP/RSET/QUIT are
  accepted (``530 5.7.0``) and ``AUTH`` is not even advertised: a password
  never crosses the wire in clear (RFC 4954 §4, RFC 8314 §3).  Client
  certificates are *optional* here (TLS-3): the handshake never fails for a
  missing or unknown one; it only makes SASL EXTERNAL fail.
* **AUTH** (RFC 4954) through ``mssgw.auth``: PLAIN and LOGIN with an
  application password (AUTH-3), EXTERNAL with a client certificate (CPS card
  or structure certificate, AUTH-2), validated here against the IGC-Santé
  anchors and CRLs since OpenSSL was told to accept any chain.  Failures are
  rate-limited and traced by ``AuthService`` (AUTH-4) and all get the same
  ``535 5.7.8``, so accounts cannot be probed; a client over its failure
  budget gets ``454 4.7.0``.
* **MAIL FROM** needs AUTH (``530 5.7.0``, RFC 4954 §6) and must be a mailbox
  the identity may send as (FLOW-2, ``553 5.7.1``): an application password
  opens exactly its one mailbox; a certificate opens the professional's own
  PER mailbox and the ORG/CAB mailboxes delegated to them, or the structure's
  APP mailboxes (BAL-3).  The header ``From`` is held to the same rule at the
  end of DATA.
* **RCPT TO** (``policy.submission.check_recipient``): an active local
  mailbox, or a remote address whose domain is on the liste blanche
  (``550 5.7.1`` now, never a later bounce); the directory replica is
  consulted per ``[submission] unknown_remote_recipient`` (default: accept
  and trace, BAL-2); a patient address must carry a valid INS matricule
  (``553 5.1.3``, PAT-1) and the sender must be a PER/ORG/CAB mailbox (PAT-4).
* **Size** (FLOW-6): the listener's ``SIZE``; a message with a patient
  recipient is capped at ``limits.patient_max_message_size`` (25 MB): a
  ``SIZE=`` declared at MAIL above the cap is refused at the patient's RCPT
  (RFC 1870 §6.2 allows a per-recipient limit there), the actual size at the
  end of DATA; both ``552 5.3.4``.
* **End of DATA**: the message, preceded by one ``Received:`` line (``with
  ESMTPSA``, RFC 3848), is stored for local recipients and queued for remote
  ones in **one** ``store.messages.deliver`` call (same durability either
  way); ``250`` is sent only after it returned (STORE-2), then the relay is
  woken.  No copy is filed in ``Sent``: Thunderbird appends its own over
  IMAP, a second one would be a duplicate.  A local recipient whose NOTIFY
  asks for SUCCESS gets its "delivered" DSN at once (RFC 3461 §6.2.1: for
  that recipient we are the final delivery MTA).

Every refused MAIL/RCPT, every accepted recipient that the directory does
not know, and every end of DATA leaves a trace record (category ``client``,
actor = the authenticated identity, never a secret or content).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import TYPE_CHECKING, cast

from cryptography import x509

from mssgw.auth.identity import Identity, Method, PrincipalKind
from mssgw.auth.sasl import (
    MECHANISMS,
    Challenge,
    Done,
    ExternalCredentials,
    Failed,
    PasswordCredentials,
    mechanism,
)
from mssgw.auth.service import AuthFailure, AuthService, Context
from mssgw.directory.lookup import DirectoryUnavailable
from mssgw.errors import MssgwError, brief
from mssgw.policy.decision import Decision
from mssgw.policy.inbound import check_recipient_count, store_unavailable
from mssgw.policy.size import too_big
from mssgw.policy.submission import (
    DirectoryAnswer,
    RecipientFacts,
    Route,
    SubmissionRules,
    check_header_from,
    check_recipient,
    check_sender,
    size_limit,
)
from mssgw.smtp import tracing
from mssgw.smtp.data import DataProblem
from mssgw.smtp.dsn_params import MailArgument, RcptArgument, split_path
from mssgw.smtp.inbound import InboundService
from mssgw.smtp.notices import Delivered, header_block, send_delivered
from mssgw.smtp.received import TlsInfo, received
from mssgw.smtp.session import (
    DATA_PROBLEMS,
    NEED_EHLO,
    DataOutcome,
    EsmtpSession,
    ListenerEnv,
    Transaction,
    describe_tls_error,
    syntax_error,
)
from mssgw.store.delivery import Envelope, LocalTarget, RemoteTarget
from mssgw.store.models import MailboxType
from mssgw.store.traces import TraceRecord
from mssgw.tls import chain as chainmod
from mssgw.tls.context import peer_chain
from mssgw.tls.identity import subject_dn

if TYPE_CHECKING:
    from mssgw.app import App
    from mssgw.config import ListenerSettings

log = logging.getLogger(__name__)

#: RFC 4954 §4: an authentication exchange line may be 12288 octets long.
AUTH_LINE_MAX = 12288
#: Largest header block read back from the spool for the header From check.


# --------------------------------------------------------------------------- replies
# RFC 4954 §6 and RFC 3463 / RFC 5248 codes of the AUTH dialogue.  They are
# protocol replies (like those of ``session.py``), not policy.


def _d(code: int, enhanced: str, reason: str) -> Decision:
    kind = {"2": "accept", "4": "tempfail", "5": "reject"}[str(code)[0]]
    return Decision(kind, code, enhanced, reason)  # type: ignore[arg-type]


AUTH_OK = _d(235, "2.7.0", "authentication succeeded")
AUTH_INVALID = _d(535, "5.7.8", "authentication credentials invalid")
AUTH_BUSY = _d(454, "4.7.0", "temporary authentication failure, try again later")
AUTH_NEEDS_TLS = _d(538, "5.7.11", "encryption required for requested authentication mechanism")
AUTH_REQUIRED = _d(530, "5.7.0", "authentication required")
AUTH_AGAIN = _d(503, "5.5.1", "already authenticated")
AUTH_IN_TRANSACTION = _d(503, "5.5.1", "AUTH not allowed during a mail transaction")
AUTH_MECHANISM = _d(504, "5.5.4", "unrecognized authentication mechanism")
AUTH_CANCELLED = _d(501, "5.7.0", "authentication cancelled")
AUTH_BAD_BASE64 = _d(501, "5.5.2", "cannot decode base64 response")
AUTH_LINE_TOO_LONG = _d(500, "5.5.6", "authentication exchange line is too long")
#: Transient and fail closed: a verified list may come with the next refresh.
NO_LISTE = _d(451, "4.7.0", "no valid liste blanche in use, try again later")

_AUTH_PARAM = re.compile(r"(?i)(^|\s)AUTH=\S*")


def _with(decision: Decision, enhanced: str) -> Decision:
    """An accepted policy decision with the enhanced code of its stage (RFC 3463:
    2.1.0 sender ok, 2.1.5 recipient ok); refusals pass unchanged."""
    if not decision.ok:
        return decision
    return Decision("accept", 250, enhanced, decision.reason)


# --------------------------------------------------------------------------- service


class SubmissionService:
    """What every session of one submission listener shares.

    Local lookups (hosted domains, mailbox states, briefly cached) are the
    port-25 ones (``InboundService``): the same facts, the same cache rules.
    Each gateway has one ``AuthService`` per listener pair, so the failure
    budget of an account is shared by ports 587 and 465.
    """

    def __init__(self, app: App, env: ListenerEnv, auth: AuthService) -> None:
        self.app = app
        self.env = env
        self.auth = auth
        self.local = InboundService(app, env)
        sub = app.settings.submission
        self.rules = SubmissionRules(
            patient_domain=sub.patient_domain.lower(),
            patient_allow_app=sub.patient_allow_app,
            unknown_remote=sub.unknown_remote_recipient,
        )

    def wake_relay(self) -> None:
        if self.app.relay is not None:
            self.app.relay.wake()


@dataclass
class _Plan:
    """Routing of the current transaction's recipients (by the transaction's id)."""

    txn: str
    routes: dict[str, Route] = field(default_factory=dict)
    patients: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------- session


class SubmissionSession(tracing.StepTraces, EsmtpSession):
    """One connection from one of our users' mail clients."""

    trace_category = "client"

    protocol_name = "ESMTPSA"  # RFC 3848: ESMTP, TLS and AUTH

    def __init__(self, service: SubmissionService, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(service.env, loop)
        self.service = service
        self.app = service.app
        self.identity: Identity | None = None
        #: Mailboxes the identity may send as: address → BAL type (PAT-4 needs it).
        self.usable: dict[str, str] = {}
        self.plan = _Plan("")

    # ------------------------------------------------------------------ TLS

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        sslobj = transport.get_extra_info("ssl_object")
        if first and sslobj is not None:
            # Port 465: the handshake is over before the first byte of SMTP.
            self._note_tls(cast(ssl.SSLObject, sslobj))

    def _note_tls(self, sslobj: ssl.SSLObject) -> None:
        chain = peer_chain(sslobj)
        cipher = sslobj.cipher()
        self.peer_chain = chain
        self.tls = TlsInfo(
            version=sslobj.version() or "TLS",
            cipher=cipher[0] if cipher else "unknown",
            bits=int(cipher[2]) if cipher else 0,
            peer_dn=subject_dn(chain[0]) if chain else None,
        )

    def _client_chain(self) -> list[x509.Certificate] | None:
        """The client certificate path, validated now; ``None`` when absent or bad.

        The optional-certificate context accepts any chain during the
        handshake (TLS-3), so the check happens here, in Python, against the
        anchors and CRLs in use: a bad certificate only means "not
        authenticated".
        """
        trust = self.app.trust
        if not self.peer_chain or trust is None:
            return None
        try:
            return chainmod.validate(self.peer_chain, trust.anchors, datetime.now(UTC), trust.crls)
        except chainmod.ChainError as exc:
            log.info("%s: client certificate not accepted: %s", self.peer_ip, exc)
            return None

    def extensions(self) -> list[str]:
        out = super().extensions()
        if self.tls is not None:
            # RFC 4954 §3; never before TLS (RFC 8314 §3, no password in clear).
            out.append("AUTH " + " ".join(MECHANISMS))
        return out

    # ------------------------------------------------------------------ AUTH (RFC 4954)

    async def smtp_AUTH(self, arg: str | None) -> None:
        if self.tls is None:
            await self.reply(AUTH_NEEDS_TLS)
            return
        if self._helo_missing():
            await self.reply(NEED_EHLO)
            return
        if self.identity is not None:
            await self.reply(AUTH_AGAIN)
            return
        if self.txn.sender is not None:
            await self.reply(AUTH_IN_TRANSACTION)
            return
        if not arg:
            await self.reply(syntax_error("AUTH mechanism [initial-response]"))
            return
        name, _, initial_text = arg.partition(" ")
        mech = mechanism(name)
        if mech is None:
            await self.reply(AUTH_MECHANISM)
            return
        initial: bytes | None = None
        if initial_text:
            # RFC 4954 §4: "=" is an empty initial response.
            initial = _b64decode(initial_text) if initial_text != "=" else b""
            if initial is None:
                await self.reply(AUTH_BAD_BASE64)
                return
        step = mech.start(initial)
        while isinstance(step, Challenge):
            await self.push("334 " + base64.b64encode(step.data).decode("ascii"))
            await self._flush()
            line = await self._auth_line()
            if line is None:
                return
            if line.strip() == b"*":
                await self.reply(AUTH_CANCELLED)
                return
            data = _b64decode(line.decode("ascii", "replace").strip())
            if data is None:
                await self.reply(AUTH_BAD_BASE64)
                return
            step = mech.step(data)
        if isinstance(step, Failed):
            await self.reply(_d(501, "5.5.2", f"malformed {mech.name} response"))
            return
        assert isinstance(step, Done)
        await self.reply(await self._sign_in(step))

    async def _auth_line(self) -> bytes | None:
        """One client response of the exchange; ``None`` when the session is over."""
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            await self._skip_long_line(exc.consumed)
            await self.reply(AUTH_LINE_TOO_LONG)
            return None
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            return None
        self._reset_timeout()
        if len(line) > AUTH_LINE_MAX:
            await self.reply(AUTH_LINE_TOO_LONG)
            return None
        return line.rstrip(b"\r\n")

    async def _sign_in(self, step: Done) -> Decision:
        creds = step.credentials
        assert self.tls is not None
        ctx = Context(ip=self.peer_ip, protocol=self.env.name, tls=self.tls.describe())
        auth = self.service.auth
        try:
            if isinstance(creds, PasswordCredentials):
                identity = await auth.authenticate_password(
                    creds.authcid, creds.password, ctx, authzid=creds.authzid
                )
            elif isinstance(creds, ExternalCredentials):
                identity = await auth.authenticate_certificate(
                    self._client_chain(), creds.authzid, ctx
                )
            else:  # bearer tokens: no mechanism yields them yet (AUTH-1)
                return AUTH_MECHANISM
        except AuthFailure as failure:
            return AUTH_BUSY if failure.retry_after is not None else AUTH_INVALID
        except MssgwError as exc:  # the store failed: not the client's fault
            log.error("%s: authentication lookup failed: %s", self.peer_ip, exc)
            return AUTH_BUSY
        try:
            self.usable = await self._usable(identity)
        except Exception as exc:
            log.error("%s: mailbox lookup failed: %s", self.peer_ip, brief(exc))
            return AUTH_BUSY
        self.identity = identity
        return AUTH_OK

    async def _usable(self, identity: Identity) -> dict[str, str]:
        """The mailboxes ``identity`` may send as (FLOW-2, BAL-3, AUTH-3).

        A password is bound to one mailbox and opens that one only.  A
        certificate proves a person (own PER, delegated ORG/CAB) or a
        structure (its APP mailboxes); whichever mailbox EXTERNAL opened,
        the person may send as any of theirs, as FLOW-2 lists them.
        """
        if identity.method is not Method.CERTIFICATE:
            return {identity.mailbox.address.lower(): identity.mailbox.type}
        structure = identity.kind is PrincipalKind.STRUCTURE
        found = await self.app.store.mailboxes.usable_by(identity.principal)
        usable = {
            m.address.lower(): m.type
            for m in found
            if (m.type == MailboxType.APP.value) == structure
        }
        usable.setdefault(identity.mailbox.address.lower(), identity.mailbox.type)
        return usable

    # ------------------------------------------------------------------ MAIL / RCPT

    async def smtp_MAIL(self, arg: str | None) -> None:
        # RFC 4954 §5: a server offering AUTH accepts the MAIL parameter AUTH=;
        # a submission server does not trust it and ignores it (§5: as "<>").
        if arg and arg[:5].upper() == "FROM:" and "=" in arg:
            try:
                inside, rest = split_path(arg[5:])
            except Exception:  # the base class reports the syntax error
                pass
            else:
                stripped = _AUTH_PARAM.sub("", rest).strip()
                arg = f"FROM:<{inside}>" + (f" {stripped}" if stripped else "")
        await super().smtp_MAIL(arg)

    async def check_mail(self, argument: MailArgument) -> Decision:
        if self.identity is None:
            return AUTH_REQUIRED
        self.plan = _Plan(self.txn.id)
        return _with(check_sender(argument.sender, self.usable), "2.1.0")

    def _sender_type(self) -> str:
        return self.usable.get((self.txn.sender or "").lower(), "")

    async def check_rcpt(self, argument: RcptArgument) -> Decision:
        if self.plan.txn != self.txn.id:
            self.plan = _Plan(self.txn.id)
        decision = check_recipient_count(len(self.txn.recipients), self.env.limits.max_recipients)
        if not decision.ok:
            return decision
        address = self._address(argument.recipient)
        domain = address.rpartition("@")[2].lower()
        local = self.service.local
        try:
            hosted = domain in await local.hosted_domains()
            state = await local.mailbox_state(address) if hosted else None
        except Exception as exc:  # database down: retry later, never a 5xx
            log.error("%s: recipient lookup failed: %s", self.peer_ip, brief(exc))
            return store_unavailable()
        liste = self.app.trust.liste if self.app.trust is not None else None
        if not hosted and liste is None:
            return NO_LISTE
        listed = hosted or (liste is not None and liste.is_listed(domain))
        rules = self.service.rules
        directory: DirectoryAnswer = "not_checked"
        if not hosted and listed and domain != rules.patient_domain:
            directory = await self._directory(address)
        # Accept mode: an unanswered lookup would not change the decision, so a
        # slow replica does not hold the user's mail (refuse mode: 451 4.4.3).
        answer: DirectoryAnswer = directory
        if directory == "unavailable" and rules.unknown_remote == "accept":
            answer = "not_checked"
        facts = RecipientFacts(address, hosted, state, listed, answer)
        verdict = check_recipient(facts, rules, sender_type=self._sender_type())
        decision = verdict.decision
        if decision.ok and verdict.patient:
            decision = self._patient_size()
        if decision.ok:
            self.plan.routes[address.lower()] = verdict.route
            if verdict.patient:
                self.plan.patients.add(address.lower())
            if directory in ("absent", "unavailable"):
                # FLOW-2 / BAL-2: accepted, and the acceptance traced.
                why = (
                    "not in the directory replica (accepted: unlisted BALs exist)"
                    if directory == "absent"
                    else "directory replica unavailable (accepted)"
                )
                accepted = _d(250, "2.1.5", why)
                await self._add_trace(
                    self._record("rcpt", accepted, self.txn, [address], None, None)
                )
        return _with(decision, "2.1.5")

    async def _directory(self, address: str) -> DirectoryAnswer:
        try:
            entry = await self.app.directory.find(address)
        except DirectoryUnavailable:
            return "unavailable"
        except Exception as exc:  # a replica bug must not turn into a refusal
            log.error("%s: directory lookup failed: %s", self.peer_ip, brief(exc))
            return "unavailable"
        return "found" if entry is not None else "absent"

    def _patient_size(self) -> Decision:
        """RFC 1870 §6.2: a recipient-specific limit refuses that RCPT with 552."""
        limits = self.app.settings.limits
        cap = size_limit(
            True, general=limits.max_message_size, patient=limits.patient_max_message_size
        )
        declared = self.txn.mail.size
        if declared is not None and declared > cap:
            return too_big(cap)
        return Decision.accept("patient recipient")

    def _address(self, recipient: str) -> str:
        if recipient.lower() == "postmaster":  # RFC 5321 §4.1.1.3 "<Postmaster>"
            primary = self.service.local.primary_domain()
            return f"postmaster@{primary}" if primary else recipient
        return recipient

    # ------------------------------------------------------------------ DATA

    def trace_headers(self) -> bytes:
        """One ``Received:`` (RFC 6409 §8.1 lets the MSA add it; RFC 5321 §4.4).

        No ``Return-Path``: the same bytes also leave for other operators,
        whose final delivery adds it.  The client certificate's DN is not
        written (it names a person; the trace record has the identity).
        """
        txn = self.txn
        assert self.session is not None and self.tls is not None
        single = txn.recipients[0].address if len(txn.recipients) == 1 else None
        tls = TlsInfo(self.tls.version, self.tls.cipher, self.tls.bits, None)
        return received(
            helo=str(self.session.host_name or ""),
            peer_ip=self.peer_ip,
            by=self.hostname,
            protocol=self.protocol_name,
            ident=txn.id,
            when=datetime.now(UTC),
            tls=tls,
            recipient=single,
        )

    async def end_of_data(self, outcome: DataOutcome) -> Decision:
        txn = outcome.transaction
        limits = self.app.settings.limits
        plan = self.plan if self.plan.txn == txn.id else _Plan(txn.id)
        limit = size_limit(
            bool(plan.patients),
            general=limits.max_message_size,
            patient=limits.patient_max_message_size,
        )
        head = b""
        if outcome.problem is DataProblem.TOO_BIG:
            decision = too_big(limits.max_message_size)
        elif outcome.problem is not None:
            decision = DATA_PROBLEMS[outcome.problem]
        elif outcome.spool_error is not None:
            log.error("%s: cannot spool message: %s", self.peer_ip, outcome.spool_error.strerror)
            decision = store_unavailable()
        elif outcome.size > limit:
            decision = too_big(limit)  # FLOW-6: 25 MB with a patient recipient
        else:
            head = await header_block(outcome.spool.source())
            decision = check_header_from(header_from(head), self.usable)
            if decision.ok:
                decision = await self._deliver(outcome, plan, head)
                if decision.ok:
                    return decision  # traced in the delivery's own transaction
        size = outcome.size if outcome.problem is None else outcome.received
        record = self._record("data", decision, txn, txn.addresses, outcome.facts.message_id, size)
        await self._add_trace(record)
        return decision

    async def _deliver(self, outcome: DataOutcome, plan: _Plan, head: bytes) -> Decision:
        txn = outcome.transaction
        local: list[LocalTarget] = []
        remote: list[RemoteTarget] = []
        for r in txn.recipients:
            address = self._address(r.address)
            if plan.routes.get(address.lower()) == "local":
                local.append(LocalTarget(address.lower()))
            else:
                remote.append(RemoteTarget(address, r.params.notify, r.params.orcpt))
        verb = "queued" if remote else "delivered"
        decision = _d(250, "2.0.0", f"{verb} as {txn.id}")
        # The trace record of the accepted message commits with the delivery.
        trace = self._record(
            "data", decision, txn, txn.addresses, outcome.facts.message_id, outcome.size
        )
        # Remote rows are inserted leased to the running relay worker, which
        # then gets them (and the bytes) from us instead of claiming them.
        relay = self.app.relay
        lease = relay.fresh_lease() if remote and relay is not None else None
        source = outcome.spool.source()
        try:
            result = await self.app.store.messages.deliver(
                source,  # type: ignore[arg-type]
                local,
                remote,
                envelope=Envelope(txn.sender or "", txn.mail.envid, txn.mail.ret),
                trace=trace,
                lease=lease,
            )
        except Exception as exc:  # StoreError, or anything from the DB driver / disk
            log.error("%s: delivery of %s failed: %s", self.peer_ip, txn.id, brief(exc))
            return store_unavailable()
        if lease is not None and relay is not None:
            content = source if isinstance(source, bytes) else None
            relay.hand(result.leased, content, outcome.facts.message_id)
        elif remote:
            self.service.wake_relay()
        if local:
            await self._delivered_notices(txn, plan, head, outcome.facts.message_id)
        return decision

    async def _delivered_notices(
        self, txn: Transaction, plan: _Plan, head: bytes, message_id: str | None
    ) -> None:
        """RFC 3461 §6.2.1: NOTIFY=SUCCESS on a local recipient → a "delivered" DSN."""
        routes = plan.routes
        delivered = [
            Delivered(self._address(r.address), r.params.notify, r.params.orcpt)
            for r in txn.recipients
            if routes.get(self._address(r.address).lower()) == "local"
        ]
        await send_delivered(
            self.app.store,
            reporting_mta=self.app.settings.gateway.hostname,
            sender=txn.sender or "",
            recipients=delivered,
            envid=txn.mail.envid,
            ret=txn.mail.ret,
            head=head,
            message_id=message_id,
        )

    # ------------------------------------------------------------------ traces

    async def refused(self, stage: str, decision: Decision, subject: str | None) -> None:
        txn = self.txn
        recipients = [subject] if stage == "rcpt" and subject else []
        if stage == "mail":
            txn = Transaction(id=txn.id, sender=subject)
        await self._add_trace(self._record(stage, decision, txn, recipients, None, None))

    async def tls_failed(self, error: BaseException) -> None:
        await self._add_trace(
            TraceRecord(
                category="client",
                action=f"{self.env.name}.starttls",
                result="refused",
                peer_ip=self.peer_ip,
                reason=f"TLS handshake failed: {describe_tls_error(error)}",
            )
        )

    def trace_actor(self) -> str | None:
        return self.identity.actor if self.identity is not None else None


# --------------------------------------------------------------------------- helpers


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def header_from(head: bytes) -> list[str]:
    """Every address of every ``From:`` field (RFC 5322 §3.6.2), unfolded."""
    values: list[str] = []
    current: list[str] | None = None
    for raw in head.split(b"\r\n"):
        if not raw:
            break
        line = raw.decode("utf-8", "replace")
        if line[:1] in (" ", "\t"):
            if current is not None:
                current.append(line)
            continue
        if current is not None:
            values.append(" ".join(p.strip() for p in current))
        name, colon, rest = line.partition(":")
        current = [rest] if colon and name.strip().lower() == "from" else None
    if current is not None:
        values.append(" ".join(p.strip() for p in current))
    return [address for _, address in getaddresses(values) if address]


# --------------------------------------------------------------------------- listeners


def _service(app: App, env: ListenerEnv) -> SubmissionService:
    # The gateway's one AuthService: IMAP and both submission ports share the
    # failure budget of an account and of a client address (AUTH-4).
    return SubmissionService(app, env, app.auth)


async def submission_listener(app: App, lst: ListenerSettings) -> asyncio.Server:
    """Port 587: STARTTLS before anything else; AUTH only under TLS (RFC 6409, RFC 3207)."""
    from mssgw.smtp.listeners import listener_env, serve

    if lst.tls != "starttls":
        raise MssgwError(
            f"listeners.submission.tls = {lst.tls!r}: port 587 must use 'starttls' (SPEC TLS-3)"
        )
    if app.trust is None:
        raise MssgwError("listeners.submission: needs tls.certificate, tls.key and tls.anchors")
    env = listener_env(app, "submission", app.trust.client_tls)
    service = _service(app, env)
    loop = asyncio.get_running_loop()
    return await serve(app, env, lst, lambda: SubmissionSession(service, loop))


async def submissions_listener(app: App, lst: ListenerSettings) -> asyncio.Server:
    """Port 465: TLS from the first byte (RFC 8314 §3.3), client certificate optional."""
    from mssgw.smtp import listeners

    if lst.tls != "implicit":
        raise MssgwError(
            f"listeners.submissions.tls = {lst.tls!r}: port 465 must use 'implicit' (RFC 8314)"
        )
    if app.trust is None:
        raise MssgwError("listeners.submissions: needs tls.certificate, tls.key and tls.anchors")
    env = listeners.listener_env(app, "submissions", app.trust.client_tls)
    service = _service(app, env)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SubmissionSession(service, loop),
        **app.bind("submissions", lst),
        ssl=app.trust.client_tls.listener_context,
        ssl_handshake_timeout=env.limits.handshake_timeout,
        backlog=512,
    )
    # The same shutdown watcher as ``serve`` (421 to open sessions at stop).
    env.spawn(listeners._close_sessions_after(server, env))
    return server
