"""IMAP listeners for the gateway: ``imap`` (143, STARTTLS) and ``imaps`` (993).

``mssgw.app`` discovers ``LISTENERS`` here.  Both listeners share one
:class:`~mssgw.imap.service.ImapService` per gateway.  Client certificates
are optional (SPEC TLS-3): the handshake never fails for a missing or
unknown certificate; only SASL EXTERNAL looks at it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mssgw.config import ListenerSettings
from mssgw.errors import MssgwError
from mssgw.imap.server import ImapConnection
from mssgw.imap.service import for_app

if TYPE_CHECKING:
    from mssgw.app import App, ListenerFactory


async def imap_listener(app: App, lst: ListenerSettings) -> asyncio.Server:
    """Port 143: plain until STARTTLS; LOGINDISABLED until then."""
    service = for_app(app)
    if app.trust is None:
        raise MssgwError("listeners.imap: STARTTLS needs tls.certificate, tls.key, tls.anchors")
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ImapConnection(service, implicit_tls=False), **app.bind("imap", lst)
    )


async def imaps_listener(app: App, lst: ListenerSettings) -> asyncio.Server:
    """Port 993: TLS from the first byte."""
    service = for_app(app)
    if app.trust is None:
        raise MssgwError("listeners.imaps: needs tls.certificate, tls.key, tls.anchors")
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: ImapConnection(service, implicit_tls=True),
        **app.bind("imaps", lst),
        ssl=app.trust.client_tls.listener_context,
    )


LISTENERS: dict[str, ListenerFactory] = {"imap": imap_listener, "imaps": imaps_listener}
