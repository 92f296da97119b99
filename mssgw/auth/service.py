"""Authentication decisions for every client protocol (IMAP now, submission later).

Edges run the SASL exchange (``auth.sasl``) and hand the credentials here;
this module decides which mailbox, if any, they open:

* **Application password** (SPEC AUTH-3): a password is bound to exactly one
  mailbox and to the identity it was issued to; it opens that mailbox and no
  other.  The login name is the mailbox address.
* **Client certificate**, SASL EXTERNAL (SPEC AUTH-2): a professional
  certificate (national id in the subject) opens the professional's own PER
  mailbox and the ORG/CAB mailboxes delegated to them (BAL-3); a structure
  certificate opens the APP mailboxes whose owner is that structure.  The
  authorisation identity names the mailbox; empty means "my only one".
* **ORG/CAB delegation scheme**: a delegate logs in *as the ORG address*,
  either with an application password issued to them for that ORG mailbox
  (``mssgw password issue ORG --identity NATIONAL_ID``; the password carries
  the delegate's identity, so traces name the person), or with their CPS
  certificate and EXTERNAL with the ORG address as authorisation identity.
  One account per mailbox in the client, which Thunderbird handles well.

Every attempt is rate-limited (SPEC AUTH-4, ``auth.ratelimit``) and traced
(TRACE-1, category ``client``); neither passwords nor certificates are ever
written to a log or a trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from mssgw.address import normalise
from mssgw.auth.identity import Identity, MailboxRef, Method, PrincipalKind
from mssgw.auth.ratelimit import RateLimiter, account_key, address_key
from mssgw.errors import MssgwError
from mssgw.store import Store
from mssgw.store.models import Mailbox, MailboxType
from mssgw.store.traces import TraceRecord
from mssgw.tls.identity import national_id, structure_id

log = logging.getLogger(__name__)


class AuthFailure(Exception):
    """Authentication refused.  ``reason`` is for traces, never for the client
    (which only learns "failed"), so that it cannot probe accounts."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Context:
    """Where an attempt comes from, for rate limits and traces."""

    ip: str | None = None
    protocol: str = "imap"
    tls: str | None = None


class AuthService:
    def __init__(self, store: Store, limiter: RateLimiter | None = None) -> None:
        self.store = store
        self.limiter = limiter or RateLimiter()

    async def authenticate_password(
        self, address: str, password: str, ctx: Context, *, authzid: str = ""
    ) -> Identity:
        """An application password for ``address`` (its bound mailbox)."""
        login = address.strip().lower()
        keys = [account_key(login), address_key(ctx.ip)]
        await self._check_rate(keys, login, ctx)
        if authzid and authzid.strip().lower() != login:
            await self._fail(keys, login, ctx, "password login cannot act as another mailbox")
        try:
            login = normalise(login)
        except MssgwError:
            await self._fail(keys, login, ctx, "login is not a mailbox address")
        found = await self.store.credentials.verify(login, password)
        if found is None:
            await self._fail(keys, login, ctx, "wrong password or unknown/inactive mailbox")
        assert found is not None
        mailbox = await self.store.mailboxes.find(found.address)
        if mailbox is None:  # deleted between the two reads
            await self._fail(keys, login, ctx, "mailbox vanished")
        assert mailbox is not None
        kind = (
            PrincipalKind.STRUCTURE
            if mailbox.type == MailboxType.APP.value
            else PrincipalKind.PROFESSIONAL
        )
        identity = Identity(
            found.identity, kind, Method.PASSWORD, _ref(mailbox), credential_id=found.credential_id
        )
        return await self._succeed(keys[0], identity, ctx)

    async def authenticate_certificate(
        self, chain: Sequence[x509.Certificate] | None, requested: str, ctx: Context
    ) -> Identity:
        """SASL EXTERNAL with a chain already validated against the anchors and CRLs."""
        requested = requested.strip().lower()
        keys = [address_key(ctx.ip)] + ([account_key(requested)] if requested else [])
        await self._check_rate(keys, requested or None, ctx)
        if not chain:
            await self._fail(keys, requested or None, ctx, "no valid client certificate")
        assert chain
        leaf = chain[0]
        professional = national_id(leaf)
        structure = structure_id(leaf)
        if professional is not None:
            kind, principal = PrincipalKind.PROFESSIONAL, professional
        elif structure is not None:
            kind, principal = PrincipalKind.STRUCTURE, structure
        else:
            await self._fail(
                keys, requested or None, ctx, "certificate names no person or structure"
            )
            raise AssertionError  # unreachable: _fail raises
        usable = [m for m in await self.store.mailboxes.usable_by(principal) if _may_use(kind, m)]
        chosen = _choose(usable, requested, kind)
        if chosen is None:
            reason = (
                f"{principal} may not use {requested}"
                if requested
                else f"{principal}: name the mailbox (authorisation identity)"
            )
            await self._fail(keys, requested or None, ctx, reason)
        assert chosen is not None
        identity = Identity(principal, kind, Method.CERTIFICATE, _ref(chosen))
        return await self._succeed(account_key(chosen.address), identity, ctx)

    # -- internals ----------------------------------------------------------------

    async def _check_rate(self, keys: list[str], account: str | None, ctx: Context) -> None:
        wait = self.limiter.retry_after(keys)
        if wait is not None:
            await self._trace("refused", account, ctx, "too many failures")
            raise AuthFailure("too many failed attempts", retry_after=wait)

    async def _fail(self, keys: list[str], account: str | None, ctx: Context, reason: str) -> None:
        self.limiter.failed(keys)
        await self._trace("failed", account, ctx, reason)
        raise AuthFailure(reason)

    async def _succeed(self, key: str, identity: Identity, ctx: Context) -> Identity:
        self.limiter.succeeded(key)
        await self._trace("ok", identity.actor, ctx, None)
        return identity

    async def _trace(
        self, result: str, actor: str | None, ctx: Context, reason: str | None
    ) -> None:
        try:
            await self.store.traces.add(
                TraceRecord(
                    category="client",
                    action=f"{ctx.protocol}.auth",
                    result=result,
                    actor=actor,
                    peer_ip=ctx.ip,
                    tls=ctx.tls,
                    reason=reason,
                )
            )
        except MssgwError as exc:  # a trace failure must not open or close the door
            log.error("cannot record authentication trace: %s", exc)


def _ref(mailbox: Mailbox) -> MailboxRef:
    return MailboxRef(mailbox.id, mailbox.address, mailbox.type)


def _may_use(kind: PrincipalKind, mailbox: Mailbox) -> bool:
    """BAL-3: professionals use PER (owned) and ORG/CAB (delegated); structures APP."""
    if kind is PrincipalKind.STRUCTURE:
        return mailbox.type == MailboxType.APP.value
    return mailbox.type != MailboxType.APP.value


def _choose(usable: list[Mailbox], requested: str, kind: PrincipalKind) -> Mailbox | None:
    if requested:
        return next((m for m in usable if m.address == requested), None)
    own = MailboxType.APP.value if kind is PrincipalKind.STRUCTURE else MailboxType.PER.value
    preferred = [m for m in usable if m.type == own]
    if len(preferred) == 1:
        return preferred[0]
    return usable[0] if len(usable) == 1 else None
