"""The port-25 listener's shared cache of sender verdicts (``InboundService.sender_verdict``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509

from mssgw.policy.decision import Decision
from mssgw.smtp import inbound


def _chain(pair: dict[str, Any]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(pair["certificate"]).read_bytes())


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Each real policy evaluation: (sender, length of the chain)."""
    calls: list[tuple[str, int]] = []

    def check_sender(sender: str, chain: Any, *rest: Any) -> Decision:
        calls.append((sender, len(chain)))
        return Decision.accept(f"verdict {len(calls)}")

    monkeypatch.setattr(inbound, "check_sender", check_sender)
    return calls


def _service(liste: object) -> Any:
    trust = SimpleNamespace(
        liste=liste, operator_tls=SimpleNamespace(generation=1), anchors=[], crls=[]
    )
    return inbound.InboundService(SimpleNamespace(trust=trust), env=None)  # type: ignore[arg-type]


def test_verdict_is_shared_by_connections_and_renewed_when_anything_changes(
    trust_space: dict[str, Any], counted: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _service(liste=object())
    now = datetime.now(UTC)
    op2 = _chain(trust_space["operators"][1])
    op1 = _chain(trust_space["operators"][0])
    # Two connections (two chain lists, the same certificates), one sender domain.
    first = service.sender_verdict("a@op2.mssante.test", list(op2), now)
    again = service.sender_verdict("B@OP2.mssante.test", list(op2), now)
    assert first is again and len(counted) == 1
    service.sender_verdict("a@other.mssante.test", op2, now)  # another domain
    service.sender_verdict("a@op2.mssante.test", op1, now)  # another peer
    assert len(counted) == 3
    service.app.trust.operator_tls.generation = 2  # certificates or CRLs reloaded
    service.sender_verdict("a@op2.mssante.test", op2, now)
    service.app.trust.liste = object()  # a new liste blanche in use
    service.sender_verdict("a@op2.mssante.test", op2, now)
    assert len(counted) == 5
    expired = op2[0].not_valid_after_utc + timedelta(seconds=1)
    service.sender_verdict("a@op2.mssante.test", op2, expired)  # past the leaf's expiry
    monkeypatch.setattr(inbound, "SENDER_TTL", 0.0)
    service.sender_verdict("a@op2.mssante.test", op2, now)  # past the TTL
    assert len(counted) == 7


def test_cache_is_bounded(counted: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inbound, "VERDICT_CACHE_MAX", 3)
    service = _service(liste=object())
    now = datetime.now(UTC)
    for i in range(10):
        service.sender_verdict(f"a@d{i}.mssante.test", [], now)
    assert len(service._verdicts) <= 3 and len(counted) == 10
