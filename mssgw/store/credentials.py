"""Application passwords (SPEC AUTH-3).

Thunderbird cannot obtain a Pro Santé Connect token by itself, so the
operator issues per-device passwords: random, shown once, stored as Argon2id
hashes (memory-hard), bound to one mailbox and to the identity they were
issued to, revocable.  The first characters are a public *prefix* stored in
clear so that a login hashes against one row, not against every password of
the mailbox.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mssgw.errors import Conflict, NotFound
from mssgw.store.models import (
    Credential,
    Delegation,
    Mailbox,
    MailboxState,
    MailboxType,
    table,
)
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store

# No 0/o, 1/l/i: passwords get read aloud and typed from paper.
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
PREFIX_LEN = 8
SECRET_LEN = 24
_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (64 MiB)


@dataclass(frozen=True)
class IssuedPassword:
    credential_id: int
    address: str
    identity: str
    password: str


@dataclass(frozen=True)
class Authenticated:
    """Who a password login proved to be."""

    credential_id: int
    mailbox_id: int
    address: str
    identity: str


def generate() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LEN))
    return "-".join(raw[i : i + 4] for i in range(0, SECRET_LEN, 4))


def canonical(password: str) -> str:
    """What users type may carry spaces, dashes or capitals; the hash is of this."""
    return "".join(c for c in password.lower() if c not in "- ")


class Credentials:
    """Repository of application passwords."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def issue(
        self, address: str, *, identity: str | None = None, label: str = ""
    ) -> IssuedPassword:
        address = address.strip().lower()
        password = generate()
        digest = await asyncio.to_thread(_HASHER.hash, canonical(password))
        async with self.store.write() as s:
            mailbox = await s.scalar(select(Mailbox).where(Mailbox.address == address))
            if mailbox is None:
                raise NotFound(f"no mailbox {address}")
            if mailbox.state != MailboxState.ACTIVE.value:
                raise Conflict(
                    f"mailbox {address} is {mailbox.state}; no password can be issued for it"
                )
            who = await _holder(s, mailbox, identity)
            cred = Credential(
                mailbox_id=mailbox.id,
                identity=who,
                label=label,
                prefix=canonical(password)[:PREFIX_LEN],
                hash=digest,
                created_at=now(),
            )
            s.add(cred)
            await s.flush()
            return IssuedPassword(cred.id, address, who, password)

    async def list(self, address: str) -> Sequence[Credential]:
        address = address.strip().lower()
        async with self.store.read() as s:
            mailbox = await s.scalar(select(Mailbox).where(Mailbox.address == address))
            if mailbox is None:
                raise NotFound(f"no mailbox {address}")
            query = (
                select(Credential)
                .where(Credential.mailbox_id == mailbox.id)
                .order_by(Credential.id)
            )
            return (await s.scalars(query)).all()

    async def revoke(self, credential_id: int) -> Credential:
        async with self.store.write() as s:
            cred = await s.get(Credential, credential_id)
            if cred is None:
                raise NotFound(f"no application password with id {credential_id}")
            if cred.revoked_at is not None:
                raise Conflict(f"application password {credential_id} was already revoked")
            cred.revoked_at = now()
            return cred

    async def verify(self, address: str, password: str) -> Authenticated | None:
        """Check a password for ``address``; on success record the use (BAL-4)."""
        address = address.strip().lower()
        given = canonical(password)
        async with self.store.read() as s:
            rows = (
                await s.execute(
                    select(Credential, Mailbox)
                    .join(Mailbox, Mailbox.id == Credential.mailbox_id)
                    .where(Mailbox.address == address, Mailbox.state == MailboxState.ACTIVE.value)
                    .where(Credential.prefix == given[:PREFIX_LEN], Credential.revoked_at.is_(None))
                )
            ).all()
        for cred, mailbox in rows:
            if await asyncio.to_thread(_matches, cred.hash, given):
                await self._record_use(cred.id, mailbox.id)
                return Authenticated(cred.id, mailbox.id, mailbox.address, cred.identity)
        return None

    async def _record_use(self, credential_id: int, mailbox_id: int) -> None:
        """Through the group committer: logins arrive in bursts (Thunderbird opens
        several connections at once) and share one commit with other writes."""
        stamp = now()
        creds, mailboxes = table(Credential), table(Mailbox)

        def work(conn: Connection) -> None:
            conn.execute(
                update(creds).where(creds.c.id == credential_id).values(last_used_at=stamp)
            )
            conn.execute(
                update(mailboxes).where(mailboxes.c.id == mailbox_id).values(last_auth_at=stamp)
            )

        await self.store.committer.run(work)


async def _holder(s: AsyncSession, mailbox: Mailbox, identity: str | None) -> str:
    """The identity a password is issued to: the owner, or a delegate (ORG/CAB)."""
    if mailbox.type in (MailboxType.PER.value, MailboxType.APP.value):
        if identity and identity != mailbox.owner_id:
            raise Conflict(
                f"{mailbox.address} belongs to {mailbox.owner_id}; a {mailbox.type} mailbox's "
                "passwords are issued to its owner only"
            )
        return mailbox.owner_id
    if not identity:
        raise Conflict(
            f"{mailbox.address} is an {mailbox.type} mailbox: say which delegate the password "
            "is for with --identity NATIONAL_ID"
        )
    delegated = await s.scalar(
        select(Delegation).where(
            Delegation.mailbox_id == mailbox.id, Delegation.identity == identity
        )
    )
    if delegated is None:
        raise Conflict(
            f"{identity} is not delegated to {mailbox.address}; "
            f"run 'mssgw delegate add {mailbox.address} {identity}' first"
        )
    return identity


def _matches(digest: str, password: str) -> bool:
    try:
        return _HASHER.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False
