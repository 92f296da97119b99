"""Counters of the SMTP listeners, and the header scan feeding them (SPEC FLOW-5).

MSSanté headers pass through untouched; they are only read, from the header
block the DATA reader saw go by (never the body), to count:

* ``X-MSS-NIL``: sending software reference, expected on every message
  (messages without it are counted too);
* ``X-MSS-CODECDA``: CDA document codes (messages carrying a structured document);
* ``X-MSS-INS``: ``O`` / ``N`` (qualified INS inside or not);
* ``X-MSS-MES: FIN``: closes a patient conversation.

The counters live in memory per listener (``stats_for(app, "mta")``) and
render as Prometheus text (``ListenerStats.prometheus``) for ``/metrics``.
"""

from __future__ import annotations

import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Largest header block scanned; a longer one is counted as far as it goes.
MAX_HEADER_SCAN = 256 * 1024

MSS_HEADERS = ("x-mss-nil", "x-mss-codecda", "x-mss-ins", "x-mss-mes")


@dataclass(frozen=True, slots=True)
class HeaderFacts:
    """What the listener keeps from a header block."""

    message_id: str | None
    mss: dict[str, str]


def scan_header_block(head: bytes) -> HeaderFacts:
    """Message-ID and the X-MSS-* fields (first occurrence) of a header block.

    Folded lines are unfolded (RFC 5322 §2.2.3); bytes that are not UTF-8 are
    replaced, since the values are only compared and counted.
    """
    fields: dict[str, str] = {}
    name: str | None = None
    value: list[str] = []

    def close() -> None:
        if name is not None and name not in fields:
            fields[name] = " ".join(v.strip() for v in value).strip()

    for raw in head.split(b"\r\n"):
        if not raw:
            break
        line = raw.decode("utf-8", "replace")
        if line[:1] in (" ", "\t"):
            value.append(line)
            continue
        close()
        label, colon, rest = line.partition(":")
        name, value = (label.strip().lower(), [rest]) if colon else (None, [])
    close()
    mss = {k: fields[k] for k in MSS_HEADERS if k in fields}
    message_id = fields.get("message-id") or None
    return HeaderFacts(message_id[:998] if message_id else None, mss)


class HeaderSniffer:
    """Collects the header block from the content stream, bounded."""

    def __init__(self, limit: int = MAX_HEADER_SCAN) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.complete = False

    def feed(self, content: bytes) -> None:
        if self.complete:
            return
        if not self._buf and content.startswith(b"\r\n"):
            self.complete = True  # no header at all
            return
        start = max(0, len(self._buf) - 3)
        self._buf += content[: self.limit - len(self._buf) + 4]
        end = self._buf.find(b"\r\n\r\n", start)
        if end >= 0:
            del self._buf[end + 2 :]
            self.complete = True
        elif len(self._buf) >= self.limit:
            self.complete = True

    def facts(self) -> HeaderFacts:
        return scan_header_block(bytes(self._buf))


@dataclass
class ListenerStats:
    """In-memory counters of one SMTP listener (monotonic, reset on restart)."""

    name: str
    connections: int = 0
    connections_refused: int = 0
    tls_failures: int = 0
    messages_accepted: int = 0
    messages_refused: int = 0
    recipients_accepted: int = 0
    recipients_refused: int = 0
    octets_accepted: int = 0
    #: Refusals by enhanced status code ("5.7.1", "4.3.0", ...).
    refusals: Counter[str] = field(default_factory=Counter)
    #: Accepted messages by MSSanté header fact (see the module doc).
    mss: Counter[str] = field(default_factory=Counter)

    def count_headers(self, facts: HeaderFacts) -> None:
        """Count one accepted message's X-MSS-* facts."""
        mss = facts.mss
        self.mss["x_mss_nil" if "x-mss-nil" in mss else "x_mss_nil_missing"] += 1
        if mss.get("x-mss-codecda"):
            self.mss["x_mss_codecda"] += 1
        ins = mss.get("x-mss-ins", "").strip().upper()
        if ins in ("O", "N"):
            self.mss[f"x_mss_ins_{ins.lower()}"] += 1
        if mss.get("x-mss-mes", "").strip().upper() == "FIN":
            self.mss["x_mss_mes_fin"] += 1

    def refused(self, enhanced: str) -> None:
        self.refusals[enhanced] += 1

    def prometheus(self) -> list[str]:
        """Lines for the ``/metrics`` page (Prometheus text format 0.0.4)."""
        label = f'listener="{self.name}"'
        out = []
        for metric, value in (
            ("connections_total", self.connections),
            ("connections_refused_total", self.connections_refused),
            ("tls_failures_total", self.tls_failures),
            ("messages_accepted_total", self.messages_accepted),
            ("messages_refused_total", self.messages_refused),
            ("recipients_accepted_total", self.recipients_accepted),
            ("recipients_refused_total", self.recipients_refused),
            ("octets_accepted_total", self.octets_accepted),
        ):
            name = f"mssgw_smtp_{metric}"
            out += [f"# TYPE {name} counter", f"{name}{{{label}}} {value}"]
        out.append("# TYPE mssgw_smtp_refusals_total counter")
        out += [
            f'mssgw_smtp_refusals_total{{{label},code="{code}"}} {n}'
            for code, n in sorted(self.refusals.items())
        ]
        out.append("# TYPE mssgw_smtp_mss_headers_total counter")
        out += [
            f'mssgw_smtp_mss_headers_total{{{label},fact="{fact}"}} {n}'
            for fact, n in sorted(self.mss.items())
        ]
        return out


_REGISTRY: weakref.WeakKeyDictionary[Any, dict[str, ListenerStats]] = weakref.WeakKeyDictionary()


def stats_for(app: Any, listener: str) -> ListenerStats:
    """The counters of ``listener`` in ``app`` (created on first use)."""
    per_app = _REGISTRY.setdefault(app, {})
    if listener not in per_app:
        per_app[listener] = ListenerStats(listener)
    return per_app[listener]


def all_stats(app: Any) -> list[ListenerStats]:
    """Every listener's counters, for ``App.metrics``."""
    return list(_REGISTRY.get(app, {}).values())
