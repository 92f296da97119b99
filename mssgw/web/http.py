"""A deliberately small HTTP/1.1 server: health, metrics, Thunderbird autoconfig.

Only GET, one request per connection, bounded request size: this listener
serves probes and mail clients, nothing else, so it needs no framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from mssgw.web.autoconfig import ClientEndpoints, autoconfig_xml

log = logging.getLogger(__name__)
MAX_REQUEST = 8192


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


def parse_request_line(head: bytes) -> tuple[str, str]:
    """Method and target of an HTTP/1.x request head (RFC 9112 §3)."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("malformed request line")
    return parts[0], parts[1]


def render(resp: Response) -> bytes:
    head = (
        f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Error')}\r\n"
        f"Content-Type: {resp.content_type}\r\nContent-Length: {len(resp.body)}\r\n"
        "Connection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    return head.encode("ascii") + resp.body


class HttpService:
    """Routes for the operator's probes and for mail clients."""

    def __init__(
        self,
        health: Callable[[], Awaitable[dict[str, object]]],
        metrics: Callable[[], Awaitable[str]],
        endpoints: ClientEndpoints,
        hosted: Callable[[], Awaitable[set[str]]],
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.endpoints = endpoints
        self.hosted = hosted

    async def route(self, method: str, target: str) -> Response:
        if method != "GET":
            return Response(405, b"only GET\n")
        url = urlsplit(target)
        if url.path == "/healthz":
            report = await self.health()
            status = 200 if report.get("status") == "ok" else 503
            return Response(status, json.dumps(report).encode(), "application/json")
        if url.path == "/metrics":
            return Response(200, (await self.metrics()).encode(), "text/plain; version=0.0.4")
        if url.path in ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"):
            return await self._autoconfig(url.query)
        return Response(404, b"not found\n")

    async def _autoconfig(self, query: str) -> Response:
        address = (parse_qs(query).get("emailaddress") or [""])[0].strip().lower()
        domain = address.rsplit("@", 1)[-1] if "@" in address else ""
        hosted = await self.hosted()
        if domain not in hosted:
            return Response(404, b"unknown domain\n")
        return Response(
            200, autoconfig_xml(domain, self.endpoints), "application/xml; charset=utf-8"
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, target = parse_request_line(head)
            response = await self.route(method, target)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            response = Response(400, b"bad request\n")
        except Exception:
            log.exception("http: internal error")
            response = Response(503, b"internal error\n")
        with contextlib.suppress(ConnectionError):
            writer.write(render(response))
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def serve(
        self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None
    ) -> asyncio.Server:
        """Listen on ``host:port``, or on ``sock`` (inherited from the supervisor)."""
        if sock is not None:
            return await asyncio.start_server(self.handle, sock=sock, limit=MAX_REQUEST)
        return await asyncio.start_server(self.handle, host, port, limit=MAX_REQUEST)
