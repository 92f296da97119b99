"""aiosmtpd's per-connection member scan, answered per class (``smtp.session._MembersByClass``)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP

from mssgw.smtp import session


class _Handler:
    pass


class _WithOwnMechanism(SMTP):
    async def auth_XTEST(self, server: Any, args: list[str]) -> None:
        return None

    @property
    def auth_like_property(self) -> str:  # read from the object, as inspect would
        return f"{id(self)}"


def _expected(obj: object) -> list[tuple[str, Any]]:
    return [(n, v) for n, v in inspect.getmembers(obj) if n.startswith("auth_")]


def test_aiosmtpd_uses_the_per_class_scan() -> None:
    assert aiosmtpd.smtp.inspect is session._MembersByClass


def test_same_members_as_inspect_for_every_object() -> None:
    loop = asyncio.new_event_loop()
    try:
        for cls in (SMTP, _WithOwnMechanism):
            first, second = cls(_Handler(), loop=loop), cls(_Handler(), loop=loop)
            for obj in (first, second, _Handler()):
                assert session._MembersByClass.getmembers(obj) == _expected(obj)
        smtp = _WithOwnMechanism(_Handler(), loop=loop)
        assert set(smtp._auth_methods) == {"LOGIN", "PLAIN", "XTEST", "like_property"}
        assert smtp._auth_methods["XTEST"].method.__self__ is smtp
    finally:
        loop.close()
