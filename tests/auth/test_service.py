"""Authentication decisions (AUTH-2/3/4, BAL-3) on both backends, with traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from mssgw.auth.identity import Method, PrincipalKind
from mssgw.auth.ratelimit import Budget, RateLimiter
from mssgw.auth.service import AuthFailure, AuthService, Context
from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType

DOMAIN = "op1.mssante.test"
CTX = Context(ip="192.0.2.10")


def load(path: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


async def setup(store: Store, professional: str, structure: str) -> None:
    await store.mailboxes.add_domain(DOMAIN)
    await store.mailboxes.add(NewMailbox(f"pro@{DOMAIN}", MailboxType.PER, professional))
    await store.mailboxes.add(NewMailbox(f"org@{DOMAIN}", MailboxType.ORG, structure))
    await store.mailboxes.add(NewMailbox(f"cab@{DOMAIN}", MailboxType.CAB, structure))
    await store.mailboxes.add(NewMailbox(f"app@{DOMAIN}", MailboxType.APP, structure))
    await store.mailboxes.add(NewMailbox(f"other@{DOMAIN}", MailboxType.PER, "810000000999"))
    await store.mailboxes.delegate(f"org@{DOMAIN}", professional)


async def test_password_opens_exactly_its_mailbox(
    store: Store, trust_space: dict[str, Any]
) -> None:
    pro = trust_space["professional"]["national_id"]
    await setup(store, pro, trust_space["structure"]["structure_id"])
    service = AuthService(store)
    own = await store.credentials.issue(f"pro@{DOMAIN}")
    delegated = await store.credentials.issue(f"org@{DOMAIN}", identity=pro)

    ident = await service.authenticate_password(f"PRO@{DOMAIN}", own.password, CTX)
    assert (ident.mailbox.address, ident.principal, ident.method) == (
        f"pro@{DOMAIN}",
        pro,
        Method.PASSWORD,
    )
    # Delegation scheme: log in as the ORG address with the delegate's password.
    ident = await service.authenticate_password(f"org@{DOMAIN}", delegated.password, CTX)
    assert ident.mailbox.address == f"org@{DOMAIN}" and ident.principal == pro
    # A password never opens another mailbox, even the same person's.
    with pytest.raises(AuthFailure):
        await service.authenticate_password(f"org@{DOMAIN}", own.password, CTX)
    with pytest.raises(AuthFailure):
        await service.authenticate_password(
            f"pro@{DOMAIN}", own.password, CTX, authzid=f"org@{DOMAIN}"
        )
    traces = await store.traces.recent(10, category="client")
    results = [t.result for t in traces if t.action == "imap.auth"]
    assert results.count("ok") == 2 and results.count("failed") == 2
    assert all(own.password not in (t.reason or "") + (t.actor or "") for t in traces)


async def test_certificates_follow_bal3(store: Store, trust_space: dict[str, Any]) -> None:
    pro = trust_space["professional"]["national_id"]
    structure = trust_space["structure"]["structure_id"]
    await setup(store, pro, structure)
    service = AuthService(store)
    pro_chain = load(trust_space["professional"]["certificate"])
    app_chain = load(trust_space["structure"]["certificate"])

    ident = await service.authenticate_certificate(pro_chain, "", CTX)
    assert ident.mailbox.address == f"pro@{DOMAIN}"
    assert (ident.kind, ident.method) == (PrincipalKind.PROFESSIONAL, Method.CERTIFICATE)
    ident = await service.authenticate_certificate(pro_chain, f"ORG@{DOMAIN}", CTX)
    assert ident.mailbox.address == f"org@{DOMAIN}"
    for refused in (f"cab@{DOMAIN}", f"app@{DOMAIN}", f"other@{DOMAIN}"):
        with pytest.raises(AuthFailure):
            await service.authenticate_certificate(pro_chain, refused, CTX)

    ident = await service.authenticate_certificate(app_chain, "", CTX)
    assert (ident.mailbox.address, ident.kind) == (f"app@{DOMAIN}", PrincipalKind.STRUCTURE)
    with pytest.raises(AuthFailure):  # a structure certificate never opens ORG mail
        await service.authenticate_certificate(app_chain, f"org@{DOMAIN}", CTX)
    with pytest.raises(AuthFailure):
        await service.authenticate_certificate(None, f"pro@{DOMAIN}", CTX)


async def test_failures_are_rate_limited(store: Store, trust_space: dict[str, Any]) -> None:
    await setup(store, trust_space["professional"]["national_id"], "1234567890")
    good = await store.credentials.issue(f"pro@{DOMAIN}")
    service = AuthService(store, RateLimiter(Budget(3, 600), Budget(50, 600)))
    for _ in range(3):
        with pytest.raises(AuthFailure) as failure:
            await service.authenticate_password(f"pro@{DOMAIN}", "wrong-guess", CTX)
        assert failure.value.retry_after is None
    # Locked: even the right password is refused without being checked.
    with pytest.raises(AuthFailure) as failure:
        await service.authenticate_password(f"pro@{DOMAIN}", good.password, CTX)
    assert failure.value.retry_after is not None
    refused = [t for t in await store.traces.recent(10) if t.result == "refused"]
    assert refused and refused[0].peer_ip == CTX.ip
