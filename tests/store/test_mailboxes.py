"""Mailbox lifecycle, delegations and application passwords (BAL-1…4, AUTH-3)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mssgw.address import AddressError
from mssgw.errors import Conflict, NotFound, StoreError
from mssgw.store import Store
from mssgw.store.folders import DEFAULT_FOLDERS, folders_of
from mssgw.store.mailboxes import NewMailbox, parse_type
from mssgw.store.models import Credential, MailboxState, MailboxType

D = "op1.mssante.test"


async def _setup(store: Store) -> None:
    await store.mailboxes.add_domain(D)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("no-at-sign", "expected local@domain"),
        ("a b@" + D, "invalid local part"),
        ("x@not_a_domain", "invalid domain"),
        ("a@@" + D, "expected local@domain"),
    ],
)
async def test_malformed_addresses_are_refused(store: Store, address: str, message: str) -> None:
    await _setup(store)
    with pytest.raises(AddressError, match=message):
        await store.mailboxes.add(NewMailbox(address, MailboxType.PER, "810000000001"))


async def test_unknown_type_is_refused() -> None:
    with pytest.raises(StoreError, match="expected one of PER, ORG, APP, CAB"):
        parse_type("XYZ")
    assert parse_type("cab") is MailboxType.CAB


async def test_mailbox_gets_special_folders_and_lowercase_address(store: Store) -> None:
    await _setup(store)
    mailbox = await store.mailboxes.add(
        NewMailbox(f"Jean.Dupont@{D.upper()}", MailboxType.PER, "810000000001")
    )
    assert mailbox.address == f"jean.dupont@{D}"
    async with store.read() as s:
        folders = {f.name: f.special_use for f in await folders_of(s, mailbox.id)}
    assert folders == dict(DEFAULT_FOLDERS)


async def test_duplicate_address_and_unhosted_domain(store: Store) -> None:
    await _setup(store)
    await store.mailboxes.add(NewMailbox(f"a@{D}", MailboxType.PER, "810000000001"))
    with pytest.raises(Conflict, match="already exists"):
        await store.mailboxes.add(NewMailbox(f"A@{D}", MailboxType.ORG, "1750000001"))
    with pytest.raises(NotFound, match="is not hosted here"):
        await store.mailboxes.add(
            NewMailbox("a@elsewhere.mssante.test", MailboxType.PER, "810000000001")
        )
    with pytest.raises(Conflict, match="already hosted"):
        await store.mailboxes.add_domain(D)


async def test_deleted_mailbox_is_final_and_its_address_never_reused(store: Store) -> None:
    await _setup(store)
    await store.mailboxes.add(NewMailbox(f"a@{D}", MailboxType.PER, "810000000001"))
    await store.mailboxes.set_state(f"a@{D}", MailboxState.SUSPENDED)
    await store.mailboxes.set_state(f"a@{D}", MailboxState.ACTIVE)
    await store.mailboxes.set_state(f"a@{D}", MailboxState.DELETED)
    with pytest.raises(Conflict, match="deleted"):
        await store.mailboxes.set_state(f"a@{D}", MailboxState.ACTIVE)
    with pytest.raises(Conflict, match="never reused"):
        await store.mailboxes.add(NewMailbox(f"a@{D}", MailboxType.PER, "810000000001"))
    assert [m.address for m in await store.mailboxes.list()] == []
    assert [m.address for m in await store.mailboxes.list(include_deleted=True)] == [f"a@{D}"]


async def test_passwords_issue_verify_revoke(store: Store) -> None:
    await _setup(store)
    await store.mailboxes.add(NewMailbox(f"a@{D}", MailboxType.PER, "810000000001"))
    issued = await store.credentials.issue(f"a@{D}", label="laptop")
    async with store.read() as s:
        row = (await s.scalars(select(Credential))).one()
    assert issued.password.replace("-", "") not in row.hash and row.hash.startswith("$argon2id$")
    ok = await store.credentials.verify(f"A@{D}", issued.password.upper().replace("-", " "))
    assert ok is not None and ok.identity == "810000000001"
    # Another last character (passwords are case-insensitive: "z" may be the right one).
    wrong_last = "y" if issued.password[-1].lower() == "z" else "z"
    assert await store.credentials.verify(f"a@{D}", issued.password[:-1] + wrong_last) is None
    mailbox = await store.mailboxes.get(f"a@{D}")
    assert mailbox.last_auth_at is not None
    await store.credentials.revoke(issued.credential_id)
    assert await store.credentials.verify(f"a@{D}", issued.password) is None
    with pytest.raises(Conflict, match="already revoked"):
        await store.credentials.revoke(issued.credential_id)


async def test_password_refused_for_deleted_or_suspended_mailbox(store: Store) -> None:
    await _setup(store)
    await store.mailboxes.add(NewMailbox(f"a@{D}", MailboxType.PER, "810000000001"))
    issued = await store.credentials.issue(f"a@{D}")
    await store.mailboxes.set_state(f"a@{D}", MailboxState.SUSPENDED)
    assert await store.credentials.verify(f"a@{D}", issued.password) is None
    await store.mailboxes.set_state(f"a@{D}", MailboxState.DELETED)
    with pytest.raises(Conflict, match="is deleted; no password"):
        await store.credentials.issue(f"a@{D}")
    with pytest.raises(NotFound):
        await store.credentials.issue(f"nobody@{D}")


async def test_org_passwords_need_a_delegate(store: Store) -> None:
    await _setup(store)
    org = f"secretariat@{D}"
    await store.mailboxes.add(NewMailbox(org, MailboxType.ORG, "1750000001"))
    with pytest.raises(Conflict, match="--identity"):
        await store.credentials.issue(org)
    with pytest.raises(Conflict, match="not delegated"):
        await store.credentials.issue(org, identity="810000000002")
    await store.mailboxes.delegate(org, "810000000002")
    issued = await store.credentials.issue(org, identity="810000000002")
    assert issued.identity == "810000000002"
    assert [m.address for m in await store.mailboxes.usable_by("810000000002")] == [org]
    await store.mailboxes.undelegate(org, "810000000002")
    assert await store.mailboxes.delegates(org) == []


async def test_only_org_and_cab_mailboxes_are_delegated(store: Store) -> None:
    await _setup(store)
    await store.mailboxes.add(NewMailbox(f"a@{D}", MailboxType.PER, "810000000001"))
    with pytest.raises(Conflict, match="only ORG and CAB"):
        await store.mailboxes.delegate(f"a@{D}", "810000000002")
    with pytest.raises(Conflict, match="owner only"):
        await store.credentials.issue(f"a@{D}", identity="810000000002")
