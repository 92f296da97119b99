"""Pipelined LDAP writes on an ldap3 connection: our own BER for three requests.

Why: ldap3 builds every request with pyasn1, about 1.4 ms of CPU per add
with our ~20 attributes, so a 536,000-entry load would take 12+ minutes
of client CPU alone.  Add, Modify and Delete requests (RFC 4511 §4.6-4.8)
are simple enough to encode by hand in microseconds, and sending them in
windows hides the round-trip.  ldap3 still owns the connection (TCP, TLS,
bind) and decodes the responses with its fast decoder; this module is only
used between ldap3 operations, never while one is outstanding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ldap3.utils.asn1 import decode_message_fast

ADD, MODIFY, DELETE = 0x68, 0x66, 0x4A  # [APPLICATION 8/6] constructed, [APPLICATION 10] primitive
_RESPONSE_OPS = {9: ADD, 7: MODIFY, 11: DELETE}
REPLACE = 2
FIRST_MESSAGE_ID = 1_000_000  # far above ldap3's own counter, never reused concurrently


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def tlv(tag: int, content: bytes) -> bytes:
    """One BER element (definite length)."""
    return bytes((tag,)) + _length(len(content)) + content


def _octets(value: str) -> bytes:
    return tlv(0x04, value.encode("utf-8"))


def _integer(n: int, tag: int = 0x02) -> bytes:
    return tlv(tag, n.to_bytes((n.bit_length() + 8) // 8, "big"))


def _attribute(name: str, values: Sequence[str]) -> bytes:
    return tlv(0x30, _octets(name) + tlv(0x31, b"".join(_octets(v) for v in values)))


def add_request(dn: str, attributes: Mapping[str, Sequence[str]]) -> bytes:
    body = b"".join(_attribute(k, v) for k, v in attributes.items())
    return tlv(ADD, _octets(dn) + tlv(0x30, body))


def modify_request(dn: str, replace: Mapping[str, Sequence[str]]) -> bytes:
    """Replace each attribute's values; an empty list removes the attribute."""
    changes = b"".join(
        tlv(0x30, _integer(REPLACE, 0x0A) + _attribute(k, v)) for k, v in replace.items()
    )
    return tlv(MODIFY, _octets(dn) + tlv(0x30, changes))


def delete_request(dn: str) -> bytes:
    return tlv(DELETE, dn.encode("utf-8"))


def message(message_id: int, request: bytes) -> bytes:
    return tlv(0x30, _integer(message_id) + request)


@dataclass(frozen=True)
class Outcome:
    """The result of one request of a window, by its position."""

    position: int
    code: int
    diagnostic: str


def _result(decoded: dict[str, Any]) -> tuple[int, str]:
    payload = decoded["payload"]
    diagnostic = payload[2][3] if len(payload) > 2 else b""
    if isinstance(diagnostic, bytes):
        diagnostic = diagnostic.decode("utf-8", "replace")
    return int(payload[0][3]), str(diagnostic)


class PipelinedWriter:
    """Send a window of requests, then collect every response."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.next_id = FIRST_MESSAGE_ID

    def run(self, requests: Iterable[bytes]) -> list[Outcome]:
        ids: dict[int, int] = {}
        wire = bytearray()
        for position, request in enumerate(requests):
            ids[self.next_id] = position
            wire += message(self.next_id, request)
            self.next_id += 1
        if not ids:
            return []
        self.connection.socket.sendall(bytes(wire))
        outcomes: list[Outcome] = []
        while len(outcomes) < len(ids):
            for raw in self.connection.strategy.receiving():
                decoded = decode_message_fast(raw)
                found = ids.get(decoded["messageID"])
                if found is None or decoded["protocolOp"] not in _RESPONSE_OPS:
                    raise ConnectionError(f"unexpected LDAP message {decoded['messageID']}")
                code, diagnostic = _result(decoded)
                outcomes.append(Outcome(found, code, diagnostic))
        outcomes.sort(key=lambda o: o.position)
        return outcomes


# --------------------------------------------------------------------------- paged search

SEARCH, SEARCH_ENTRY, SEARCH_DONE = 0x63, 0x64, 0x65
PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696
SEARCH_MESSAGE_ID = 900_000  # one search at a time on a connection, ids far from ldap3's
_NEVER_DEREF = 0


class SearchFailed(Exception):
    """A search ended with a non-zero result code."""

    def __init__(self, code: int, diagnostic: str) -> None:
        super().__init__(f"result {code} {diagnostic}".rstrip())
        self.code, self.diagnostic = code, diagnostic


def equality_filter(attribute: str, value: str) -> bytes:
    """``(attribute=value)`` (RFC 4511 §4.5.1.7, equalityMatch)."""
    return tlv(0xA3, _octets(attribute) + _octets(value))


def and_filter(*filters: bytes) -> bytes:
    return tlv(0xA0, b"".join(filters))


def search_request(base: str, scope: int, filter_: bytes, attributes: Sequence[str]) -> bytes:
    """A SearchRequest, no size or time limit, values wanted (not types only)."""
    return tlv(SEARCH, b"".join((
        _octets(base), _integer(scope, 0x0A), _integer(_NEVER_DEREF, 0x0A),
        _integer(0), _integer(0), tlv(0x01, b"\x00"), filter_,
        tlv(0x30, b"".join(_octets(a) for a in attributes)),
    )))


def paged_control(size: int, cookie: bytes) -> bytes:
    value = tlv(0x30, _integer(size) + tlv(0x04, cookie))
    return tlv(0x30, _octets(PAGED_RESULTS) + tlv(0x04, value))


def _element(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the BER element at ``pos`` (one-byte tags)."""
    tag, size = data[pos], data[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    return tag, pos, pos + size


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    while start < end:
        element = _element(data, start)
        yield element
        start = element[2]


def decode_entry(data: bytes, start: int, end: int,
                 names: Mapping[str, str]) -> tuple[str, dict[str, list[str]]]:
    """A SearchResultEntry's DN and attributes, named as the caller asked (``names``
    maps lower-case names to that spelling; other attributes are dropped)."""
    _, dn_start, dn_end = _element(data, start)
    _, list_start, list_end = _element(data, dn_end)
    attributes: dict[str, list[str]] = {}
    for _, attr_start, _attr_end in _children(data, list_start, list_end):
        _, type_start, type_end = _element(data, attr_start)
        name = names.get(data[type_start:type_end].decode("utf-8").lower())
        if name is None:
            continue
        _, set_start, set_end = _element(data, type_end)
        attributes[name] = [
            data[s:e].decode("utf-8") for _, s, e in _children(data, set_start, set_end)
        ]
    return data[dn_start:dn_end].decode("utf-8"), attributes


def _done(data: bytes, start: int, end: int, message_end: int) -> tuple[int, str, bytes]:
    """A SearchResultDone's result code, diagnostic and paged-results cookie."""
    parts = list(_children(data, start, end))
    code = int.from_bytes(data[parts[0][1] : parts[0][2]], "big")
    diagnostic = data[parts[2][1] : parts[2][2]].decode("utf-8", "replace")
    cookie = b""
    if end < message_end and data[end] == 0xA0:  # controls
        _, controls_start, controls_end = _element(data, end)
        for _, c_start, c_end in _children(data, controls_start, controls_end):
            fields = list(_children(data, c_start, c_end))
            if data[fields[0][1] : fields[0][2]].decode() != PAGED_RESULTS:
                continue
            value_start = fields[-1][1]
            sequence_start = _element(data, value_start)[1]
            size_end = _element(data, sequence_start)[2]
            _, k_start, k_end = _element(data, size_end)
            cookie = data[k_start:k_end]
    return code, diagnostic, cookie


class _MessageReader:
    """Whole LDAP messages off a socket, buffered (no ldap3 decoding)."""

    def __init__(self, sock: Any) -> None:
        self.sock, self.buffer = sock, b""

    def messages(self) -> list[bytes]:
        """The complete messages buffered, receiving until there is at least one."""
        while True:
            found = self._split()
            if found:
                return found
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("LDAP server closed the connection")
            self.buffer += data

    def _split(self) -> list[bytes]:
        buffer, pos, found = self.buffer, 0, []
        while len(buffer) - pos >= 2:
            size = buffer[pos + 1]
            header = 2 + (size & 0x7F if size & 0x80 else 0)
            if len(buffer) - pos < header:
                break
            end = _element(buffer, pos)[2]
            if end > len(buffer):
                break
            found.append(buffer[pos:end])
            pos = end
        self.buffer = buffer[pos:]
        return found


def paged_search(connection: Any, base: str, scope: int, filter_: bytes,
                 attributes: Sequence[str], page_size: int
                 ) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """Every entry a search finds, page by page (RFC 2696), decoded here.

    ldap3's paged search decodes each entry into case-insensitive dicts
    through its formatters, ~100 µs an entry: most of an incremental sync of
    the national 536k.  Consume the iterator fully: the connection is busy
    until then.
    """
    names = {a.lower(): a for a in attributes}
    request = search_request(base, scope, filter_, attributes)
    reader, cookie = _MessageReader(connection.socket), b""
    while True:
        connection.socket.sendall(tlv(0x30, _integer(SEARCH_MESSAGE_ID) + request
                                      + tlv(0xA0, paged_control(page_size, cookie))))
        while True:
            finished = False
            for raw in reader.messages():
                start, end = _element(raw, 0)[1:]
                id_end = _element(raw, start)[2]
                op, op_start, op_end = _element(raw, id_end)
                if op == SEARCH_ENTRY:
                    yield decode_entry(raw, op_start, op_end, names)
                elif op == SEARCH_DONE:
                    code, diagnostic, cookie = _done(raw, op_start, op_end, end)
                    if code:
                        raise SearchFailed(code, diagnostic)
                    finished = True
                # search result references (0x73) are not followed
            if finished:
                break
        if not cookie:
            return
