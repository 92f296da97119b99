"""Thunderbird autoconfiguration (SPEC AUTH-5).

The XML format is Mozilla's "config-v1.1"; Thunderbird fetches it from
``autoconfig.<domain>/mail/config-v1.1.xml`` or the domain's
``/.well-known/autoconfig/mail/config-v1.1.xml``.  We announce implicit TLS
ports first (they avoid a STARTTLS downgrade) and the application-password
login (``password-cleartext`` over TLS) that Thunderbird can use alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class ClientEndpoints:
    hostname: str
    imaps: int | None = 993
    imap: int | None = 143
    submissions: int | None = 465
    submission: int | None = 587


def _server(kind: str, proto: str, host: str, port: int, socket_type: str) -> str:
    return (
        f'    <{kind} type="{proto}">\n'
        f"      <hostname>{escape(host)}</hostname>\n      <port>{port}</port>\n"
        f"      <socketType>{socket_type}</socketType>\n"
        "      <authentication>password-cleartext</authentication>\n"
        "      <username>%EMAILADDRESS%</username>\n"
        f"    </{kind}>\n"
    )


def autoconfig_xml(domain: str, ep: ClientEndpoints) -> bytes:
    servers = []
    for port, socket_type in ((ep.imaps, "SSL"), (ep.imap, "STARTTLS")):
        if port:
            servers.append(_server("incomingServer", "imap", ep.hostname, port, socket_type))
    for port, socket_type in ((ep.submissions, "SSL"), (ep.submission, "STARTTLS")):
        if port:
            servers.append(_server("outgoingServer", "smtp", ep.hostname, port, socket_type))
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
        f'  <emailProvider id="{escape(domain)}">\n    <domain>{escape(domain)}</domain>\n'
        f"    <displayName>MSSanté {escape(domain)}</displayName>\n"
        + "".join(servers)
        + "  </emailProvider>\n</clientConfig>\n"
    )
    return text.encode("utf-8")
