"""Hosted domains, mailboxes (BAL) and their delegations.

Lifecycle rules (SPEC BAL-1, BAL-4): address and type are fixed at creation;
a mailbox is active, suspended, or deleted; a deleted mailbox keeps its row
(the address is never given to someone else) and cannot be revived.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mssgw.address import domain_of, normalise
from mssgw.config import is_domain
from mssgw.errors import Conflict, NotFound, StoreError
from mssgw.store.folders import create_default_folders
from mssgw.store.models import Delegation, Domain, Mailbox, MailboxState, MailboxType
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store


@dataclass(frozen=True)
class NewMailbox:
    """What an operator gives to create a BAL."""

    address: str
    type: MailboxType
    owner_id: str
    display_name: str = ""
    structure_id: str | None = None
    liste_rouge: bool = False


def parse_type(value: str) -> MailboxType:
    try:
        return MailboxType(value.upper())
    except ValueError:
        raise StoreError(
            f"unknown mailbox type {value!r}: expected one of PER, ORG, APP, CAB"
        ) from None


class Mailboxes:
    """Repository of domains, mailboxes and delegations."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- domains ------------------------------------------------------------------

    async def add_domain(self, name: str) -> Domain:
        name = name.strip().lower()
        if not is_domain(name):
            raise StoreError(f"{name!r} is not a domain name (e.g. hopital.mssante.fr)")
        async with self.store.write() as s:
            if await _domain(s, name) is not None:
                raise Conflict(f"domain {name} is already hosted")
            domain = Domain(name=name, created_at=now())
            s.add(domain)
        return domain

    async def ensure_domain(self, name: str) -> None:
        async with self.store.write() as s:
            if await _domain(s, name) is None:
                s.add(Domain(name=name, created_at=now()))

    async def list_domains(self) -> list[tuple[Domain, int]]:
        """Every hosted domain with its number of non-deleted mailboxes."""
        count = (
            select(func.count(Mailbox.id))
            .where(Mailbox.domain_id == Domain.id, Mailbox.state != MailboxState.DELETED.value)
            .scalar_subquery()
        )
        async with self.store.read() as s:
            rows = await s.execute(select(Domain, count).order_by(Domain.name))
            return [(d, n) for d, n in rows.all()]

    async def hosted_domains(self) -> set[str]:
        async with self.store.read() as s:
            return set((await s.scalars(select(Domain.name))).all())

    # -- mailboxes ----------------------------------------------------------------

    async def add(self, new: NewMailbox) -> Mailbox:
        address = normalise(new.address)
        owner = new.owner_id.strip()
        if not owner:
            raise StoreError(f"{address}: an owner id is required (RPPS/ADELI or FINESS/SIRET)")
        async with self.store.write() as s:
            domain = await _domain(s, domain_of(address))
            if domain is None:
                raise NotFound(
                    f"{address}: domain {domain_of(address)} is not hosted here; "
                    f"add it first with 'mssgw domain add {domain_of(address)}'"
                )
            existing = await _mailbox(s, address)
            if existing is not None:
                state = "" if existing.state == "active" else f" ({existing.state})"
                raise Conflict(
                    f"mailbox {address} already exists{state}; addresses are never reused"
                )
            stamp = now()
            mailbox = Mailbox(
                address=address,
                domain_id=domain.id,
                type=new.type.value,
                owner_id=owner,
                structure_id=new.structure_id,
                display_name=new.display_name,
                state=MailboxState.ACTIVE.value,
                liste_rouge=new.liste_rouge,
                created_at=stamp,
                updated_at=stamp,
            )
            s.add(mailbox)
            await s.flush()
            await create_default_folders(s, mailbox.id)
        return mailbox

    async def get(self, address: str) -> Mailbox:
        async with self.store.read() as s:
            mailbox = await _mailbox(s, address.strip().lower())
        if mailbox is None:
            raise NotFound(f"no mailbox {address.strip().lower()}")
        return mailbox

    async def find(self, address: str) -> Mailbox | None:
        async with self.store.read() as s:
            return await _mailbox(s, address.strip().lower())

    async def list(
        self, *, domain: str | None = None, include_deleted: bool = False
    ) -> Sequence[Mailbox]:
        query = select(Mailbox).order_by(Mailbox.address)
        if domain:
            query = query.join(Domain, Domain.id == Mailbox.domain_id).where(
                Domain.name == domain.lower()
            )
        if not include_deleted:
            query = query.where(Mailbox.state != MailboxState.DELETED.value)
        async with self.store.read() as s:
            return (await s.scalars(query)).all()

    async def set_state(self, address: str, state: MailboxState) -> Mailbox:
        """Suspend, reactivate or delete.  A deleted mailbox stays deleted."""
        address = address.strip().lower()
        async with self.store.write() as s:
            mailbox = await _mailbox(s, address)
            if mailbox is None:
                raise NotFound(f"no mailbox {address}")
            if mailbox.state == MailboxState.DELETED.value:
                raise Conflict(f"mailbox {address} is deleted; it cannot change state")
            mailbox.state = state.value
            mailbox.updated_at = now()
        return mailbox

    # -- delegations --------------------------------------------------------------

    async def delegate(self, address: str, identity: str) -> None:
        identity = identity.strip()
        async with self.store.write() as s:
            mailbox = await _live_mailbox(s, address)
            if mailbox.type not in (MailboxType.ORG.value, MailboxType.CAB.value):
                raise Conflict(
                    f"{mailbox.address} is a {mailbox.type} mailbox; only ORG and CAB mailboxes "
                    "are delegated (SPEC BAL-3)"
                )
            found = await s.scalar(
                select(Delegation).where(
                    Delegation.mailbox_id == mailbox.id, Delegation.identity == identity
                )
            )
            if found is not None:
                raise Conflict(f"{identity} is already delegated to {mailbox.address}")
            s.add(Delegation(mailbox_id=mailbox.id, identity=identity, created_at=now()))

    async def undelegate(self, address: str, identity: str) -> None:
        async with self.store.write() as s:
            mailbox = await _live_mailbox(s, address)
            found = await s.scalar(
                select(Delegation).where(
                    Delegation.mailbox_id == mailbox.id, Delegation.identity == identity
                )
            )
            if found is None:
                raise NotFound(f"{identity} is not delegated to {mailbox.address}")
            await s.delete(found)

    async def delegates(self, address: str) -> builtins.list[str]:
        async with self.store.read() as s:
            mailbox = await _mailbox(s, address.strip().lower())
            if mailbox is None:
                raise NotFound(f"no mailbox {address}")
            rows = await s.scalars(
                select(Delegation.identity)
                .where(Delegation.mailbox_id == mailbox.id)
                .order_by(Delegation.identity)
            )
            return list(rows.all())

    async def usable_by(self, identity: str) -> Sequence[Mailbox]:
        """Mailboxes an identity may use: its own (PER/APP owner) and those delegated to it."""
        delegated = select(Delegation.mailbox_id).where(Delegation.identity == identity)
        query = (
            select(Mailbox)
            .where((Mailbox.owner_id == identity) | Mailbox.id.in_(delegated))
            .where(Mailbox.state == MailboxState.ACTIVE.value)
            .order_by(Mailbox.address)
        )
        async with self.store.read() as s:
            return (await s.scalars(query)).all()


async def _domain(s: AsyncSession, name: str) -> Domain | None:
    return await s.scalar(select(Domain).where(Domain.name == name))


async def _mailbox(s: AsyncSession, address: str) -> Mailbox | None:
    return await s.scalar(select(Mailbox).where(Mailbox.address == address))


async def _live_mailbox(s: AsyncSession, address: str) -> Mailbox:
    address = address.strip().lower()
    mailbox = await _mailbox(s, address)
    if mailbox is None:
        raise NotFound(f"no mailbox {address}")
    if mailbox.state == MailboxState.DELETED.value:
        raise Conflict(f"mailbox {address} is deleted")
    return mailbox
