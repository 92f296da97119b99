"""MIME structure of stored messages: ENVELOPE, BODYSTRUCTURE, BODY[section].

Everything works on the raw octets and byte offsets into them; nothing is
re-serialised, so a section is always a slice of the stored blob and sizes
are exact (SPEC STORE-1: RFC822.SIZE equals the octets of ``BODY[]``).

* :func:`parse_message` builds a tree of :class:`Part` (offsets only).
* :func:`envelope` / :func:`bodystructure` return JSON-serialisable values
  the store caches at delivery; :func:`render_envelope` and
  :func:`render_bodystructure` turn them into IMAP syntax (RFC 3501 §7.4.2).
* :func:`section` extracts ``BODY[1.2.HEADER.FIELDS (...)]`` & co
  (RFC 3501 §6.4.5), :func:`partial` applies ``<origin.length>``.

Malformed input never raises: a missing final boundary ends the part at the
end of its parent, a multipart without boundary parameter is reported as
text/plain, a bare LF is a line ending, invalid encodings are opaque bytes.
Header text is kept as sent (encoded words and raw UTF-8, RFC 6532); in the
JSON form 8-bit octets that are not UTF-8 survive as lone surrogates
(``surrogateescape``), which ``json.dumps`` writes as ``\\udcXX`` escapes and
the renderer turns back into the original octets.

Sizes are physical octet counts; ``lines`` counts LF characters of the body
(for CRLF messages both match Dovecot, which counts CRLF "virtual" sizes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .protocol import writer
from .protocol.commands import Section

JSON = Any  # nested dict/list/str/int/None, JSON-serialisable

MAX_DEPTH = 50  # nesting bound: deeper multiparts are treated as opaque leaves

_FIELD_RE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_TOKEN_RE = re.compile(r'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+')
_FOLD_RE = re.compile(rb"\r?\n(?=[ \t])")
_WS_RE = re.compile(r"[ \t\r\n]+")


# -- header fields ----------------------------------------------------------


@dataclass(slots=True)
class HeaderField:
    """One header field: lower-cased ``name`` and its raw span.

    ``start:end`` covers the whole field including continuation lines and the
    final line terminator; ``value_start`` is just after the colon.
    """

    name: str
    start: int
    value_start: int
    end: int


@dataclass(slots=True)
class Part:
    """A MIME entity as byte offsets into the raw message.

    ``start:body_start`` is the header (blank line included when present),
    ``body_start:end`` the body.  ``children`` is set for a multipart,
    ``message`` for a ``message/rfc822`` part (the encapsulated message).
    """

    start: int
    body_start: int
    end: int
    fields: list[HeaderField]
    type: str
    subtype: str
    params: list[tuple[str, str]] | None
    children: list[Part] = field(default_factory=list)
    message: Part | None = None

    @property
    def is_multipart(self) -> bool:
        return self.type.lower() == "multipart"


def _header_fields(raw: bytes, start: int, end: int) -> tuple[list[HeaderField], int]:
    """Parse header lines from ``start``; return the fields and body start.

    The header ends at the first empty line (consumed) or, for broken
    parts, at the first line that is neither a field nor a continuation; the
    body then starts at that line.
    """
    fields: list[HeaderField] = []
    pos = start
    while pos < end:
        nl = raw.find(b"\n", pos, end)
        line_end = end if nl < 0 else nl + 1
        first = raw[pos]
        if first == 0x0A or (first == 0x0D and line_end - pos == 2 and nl >= 0):
            return fields, line_end  # the blank line separating the body
        if first in (0x20, 0x09) and fields:
            fields[-1].end = line_end
        else:
            m = _FIELD_RE.match(raw, pos, line_end)
            if m is None:
                return fields, pos
            name = raw[pos : m.end() - 1].rstrip(b" \t").decode("ascii").lower()
            fields.append(HeaderField(name, pos, m.end(), line_end))
        pos = line_end
    return fields, end


def _decode(octets: bytes) -> str:
    return octets.decode("utf-8", "surrogateescape")


def field_value(raw: bytes, f: HeaderField) -> str:
    """Unfolded value (RFC 5322 §2.2.3), surrounding white space removed."""
    return _decode(_FOLD_RE.sub(b"", raw[f.value_start : f.end])).strip(" \t\r\n")


def _first(raw: bytes, fields: list[HeaderField], name: str) -> str | None:
    for f in fields:
        if f.name == name:
            return field_value(raw, f)
    return None


# -- MIME header values (RFC 2045 §5.1, RFC 2183) ------------------------------


def _mime_tokens(value: str) -> list[tuple[str, str]]:
    """Tokens of a structured MIME value: ("t", token), ("q", quoted) or
    ("s", special); comments are dropped."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                if value[i] == "\\":
                    i += 1
                elif value[i] == "(":
                    depth += 1
                elif value[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        elif c == '"':
            text, i = _quoted(value, i)
            out.append(("q", text))
        else:
            m = _TOKEN_RE.match(value, i)
            if m:
                out.append(("t", m.group(0)))
                i = m.end()
            else:
                out.append(("s", c))
                i += 1
    return out


def _quoted(value: str, i: int) -> tuple[str, int]:
    """Content of the quoted string starting at ``value[i] == '"'``."""
    chars: list[str] = []
    i += 1
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            chars.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(chars), i + 1
        if c not in "\r\n":
            chars.append(c)
        i += 1
    return "".join(chars), i


def _split_params(value: str) -> list[str]:
    """Split a structured value at ``;`` outside quoted strings/comments."""
    segments: list[str] = []
    buf: list[str] = []
    quoted = False
    depth = 0
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and (quoted or depth) and i + 1 < len(value):
            buf.append(value[i : i + 2])
            i += 2
            continue
        if c == '"' and not depth:
            quoted = not quoted
        elif c == "(" and not quoted:
            depth += 1
        elif c == ")" and not quoted and depth:
            depth -= 1
        elif c == ";" and not quoted and not depth:
            segments.append("".join(buf))
            buf = []
            i += 1
            continue
        buf.append(c)
        i += 1
    segments.append("".join(buf))
    return segments


def _params(segments: list[str]) -> list[tuple[str, str]]:
    """``attribute "=" value`` segments; what does not parse is skipped.

    RFC 2231 forms (``name*0*``...) are kept as sent.  An unquoted value
    runs to the next ``;`` so that sloppy ``name=my file.pdf`` survives.
    """
    params: list[tuple[str, str]] = []
    for segment in segments:
        name, sep, value = segment.partition("=")
        name, value = name.strip(" \t\r\n"), value.strip(" \t\r\n")
        if not sep or not _TOKEN_RE.fullmatch(name):
            continue
        if value.startswith('"'):
            value = _quoted(value, 0)[0]
        params.append((name, value))
    return params


def _head_tokens(value: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Tokens before the first ``;`` and the parameters after it."""
    segments = _split_params(value)
    return _mime_tokens(segments[0]), _params(segments[1:])


def _content_type(value: str | None) -> tuple[str, str, list[tuple[str, str]]] | None:
    if value is None:
        return None
    tokens, params = _head_tokens(value)
    if len(tokens) != 3 or tokens[0][0] != "t" or tokens[1] != ("s", "/") or tokens[2][0] != "t":
        return None  # RFC 2045 §5.2: invalid means the default
    return tokens[0][1], tokens[2][1], params


def _param(params: list[tuple[str, str]] | None, name: str) -> str | None:
    for key, value in params or ():
        if key.lower() == name:
            return value
    return None


def parse_message(raw: bytes) -> Part:
    """Parse the whole message into a :class:`Part` tree (never raises)."""
    return _entity(raw, 0, len(raw), ("text", "plain"), 0)


def _entity(raw: bytes, start: int, end: int, default: tuple[str, str], depth: int) -> Part:
    fields, body_start = _header_fields(raw, start, end)
    ctype = _content_type(_first(raw, fields, "content-type"))
    if ctype is None:
        params = [("charset", "us-ascii")] if default == ("text", "plain") else None
        part = Part(start, body_start, end, fields, default[0], default[1], params)
    else:
        ptype, psub, plist = ctype
        if ptype.lower() == "text" and _param(plist, "charset") is None:
            plist = [("charset", "us-ascii"), *plist]  # RFC 2045 §5.2 default
        part = Part(start, body_start, end, fields, ptype, psub, plist or None)
    kind = (part.type.lower(), part.subtype.lower())
    if part.is_multipart:
        boundary = _param(part.params, "boundary")
        if not boundary or depth >= MAX_DEPTH:
            # RFC 2046 §5.1.1 requires the parameter; without it the body
            # cannot be split, so it is shown as plain text.
            part.type, part.subtype, part.params = "text", "plain", [("charset", "us-ascii")]
            return part
        child_default = ("message", "rfc822") if kind[1] == "digest" else ("text", "plain")
        spans = _split(raw, body_start, end, boundary.encode("utf-8", "surrogateescape"))
        if not spans:
            spans = [(end, end)]  # IMAP needs one part at least (as Dovecot)
        part.children = [_entity(raw, s, e, child_default, depth + 1) for s, e in spans]
    elif kind == ("message", "rfc822") and depth < MAX_DEPTH:
        part.message = _entity(raw, body_start, end, ("text", "plain"), depth + 1)
    return part


def _split(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Body part spans of a multipart body (RFC 2046 §5.1.1).

    A delimiter is ``--boundary`` at the start of a line, optionally ``--``
    (close), then only white space to the end of the line.  The line break
    before a delimiter belongs to it, not to the preceding part.  Without a
    close delimiter the last part runs to the end of the parent.
    """
    delimiter = b"--" + boundary
    spans: list[tuple[int, int]] = []
    current: int | None = None
    pos = start
    while True:
        i = raw.find(delimiter, pos, end)
        if i < 0:
            break
        pos = i + 1
        if i != start and raw[i - 1] != 0x0A:
            continue
        j = i + len(delimiter)
        closing = raw.startswith(b"--", j) and j + 2 <= end
        k = j + 2 if closing else j
        while k < end and raw[k] in (0x20, 0x09):
            k += 1
        if k < end and raw[k] == 0x0D and k + 1 < end and raw[k + 1] == 0x0A:
            k += 2
        elif k < end and raw[k] == 0x0A:
            k += 1
        elif k < end:
            continue  # something else follows: not a delimiter line
        if current is not None:
            stop = i
            if stop > current and raw[stop - 1] == 0x0A:
                stop -= 1
                if stop > current and raw[stop - 1] == 0x0D:
                    stop -= 1
            spans.append((current, stop))
        if closing:
            return spans
        current = pos = k
    if current is not None:
        spans.append((current, end))
    return spans


# -- ENVELOPE (RFC 3501 §7.4.2) ------------------------------------------------

_ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc")


def envelope(raw: bytes, part: Part | None = None) -> JSON:
    """ENVELOPE of the message (or of an encapsulated ``part``) as JSON.

    Keys: date, subject, from, sender, reply_to, to, cc, bcc, in_reply_to,
    message_id.  Address lists are lists of ``[name, adl, mailbox, host]``.
    RFC 3501: an absent or empty Sender/Reply-To takes the From value.
    """
    part = part if part is not None else parse_message(raw)
    fields = part.fields

    def value(name: str) -> str | None:
        v = _first(raw, fields, name)
        return v if v else None

    addresses = {name: parse_addresses(value(name)) for name in _ADDRESS_HEADERS}
    for name in ("sender", "reply-to"):
        if addresses[name] is None:
            addresses[name] = addresses["from"]
    return {
        "date": value("date"),
        "subject": value("subject"),
        "from": addresses["from"],
        "sender": addresses["sender"],
        "reply_to": addresses["reply-to"],
        "to": addresses["to"],
        "cc": addresses["cc"],
        "bcc": addresses["bcc"],
        "in_reply_to": value("in-reply-to"),
        "message_id": value("message-id"),
    }


def _address_tokens(value: str) -> list[tuple[str, str]]:
    """RFC 5322 tokens: ("a", atom/dot-atom), ("q", quoted), ("d", domain
    literal), ("c", comment text), ("s", special)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth, j, chars = 0, i, []
            while j < n:
                ch = value[j]
                if ch == "\\" and j + 1 < n:
                    chars.append(value[j + 1])
                    j += 2
                    continue
                if ch == "(":
                    depth += 1
                    if depth > 1:
                        chars.append(ch)
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                    chars.append(ch)
                else:
                    chars.append(ch)
                j += 1
            out.append(("c", _WS_RE.sub(" ", "".join(chars)).strip()))
            i = j + 1
        elif c == '"':
            text, i = _quoted(value, i)
            out.append(("q", text))
        elif c == "[":
            j = value.find("]", i)
            j = n - 1 if j < 0 else j
            out.append(("d", value[i : j + 1]))
            i = j + 1
        elif c in "<>@,;:":
            out.append(("s", c))
            i += 1
        elif c == ")":  # a stray closing parenthesis: not a token, skip it
            i += 1
        else:
            j = i
            while j < n and value[j] not in ' \t\r\n()"[<>@,;:':
                j += 1
            out.append(("a", value[i:j]))
            i = j
    return out


def parse_addresses(value: str | None) -> list[list[str | None]] | None:
    """An address-list header as ENVELOPE addresses (``None`` when empty).

    Groups become ``[None, None, name, None]`` ... ``[None, None, None,
    None]`` (RFC 3501 §7.4.2).  Names and local parts are kept as sent
    (encoded words are not decoded).
    """
    if not value:
        return None
    tokens = _address_tokens(value)
    out: list[list[str | None]] = []
    current: list[tuple[str, str]] = []
    in_group = False
    angle = 0
    for tok in tokens:
        kind, text = tok
        if kind == "s" and text == "<":
            angle += 1
        elif kind == "s" and text == ">":
            angle = max(0, angle - 1)
        if kind == "s" and angle == 0:
            if text == ":" and not in_group and not any(t[0] == "s" for t in current):
                out.append([None, None, _phrase(current) or "", None])
                in_group, current = True, []
                continue
            if text == ";" and in_group:
                _flush(current, out)
                out.append([None, None, None, None])
                in_group, current = False, []
                continue
            if text == ",":
                _flush(current, out)
                current = []
                continue
        current.append(tok)
    _flush(current, out)
    if in_group:
        out.append([None, None, None, None])
    return out or None


def _phrase(tokens: list[tuple[str, str]]) -> str | None:
    words = [text for kind, text in tokens if kind in ("a", "q")]
    return " ".join(words) if words else None


def _flush(tokens: list[tuple[str, str]], out: list[list[str | None]]) -> None:
    """Turn one mailbox's tokens into ``[name, adl, mailbox, host]``."""
    if not any(kind != "c" for kind, _ in tokens):
        return
    adl = None
    if ("s", "<") in tokens:
        lt = tokens.index(("s", "<"))
        gt = tokens.index(("s", ">")) if ("s", ">") in tokens[lt:] else len(tokens)
        name = _phrase(tokens[:lt])
        if name is None:
            comments = [t for k, t in tokens[gt:] if k == "c"]
            name = comments[-1] if comments else None
        inner = [t for t in tokens[lt + 1 : gt] if t[0] != "c"]
        if ("s", ":") in inner:  # obsolete route: <@a,@b:user@host>
            colon = inner.index(("s", ":"))
            adl = "".join(text for _, text in inner[:colon]) or None
            inner = inner[colon + 1 :]
        mailbox, host = _addr_spec(inner)
    else:
        comments = [t for k, t in tokens if k == "c"]
        name = comments[-1] if comments else None
        mailbox, host = _addr_spec([t for t in tokens if t[0] != "c"])
    out.append([name or None, adl, mailbox, host])


def _addr_spec(tokens: list[tuple[str, str]]) -> tuple[str, str]:
    """``local-part "@" domain``; a missing part is reported the way Dovecot
    does (``MISSING_MAILBOX``/``MISSING_DOMAIN``), never as NIL, because a
    NIL host would mean a group marker."""
    at = max((i for i, t in enumerate(tokens) if t == ("s", "@")), default=-1)
    local_tokens = tokens[:at] if at >= 0 else tokens
    local = "".join(text for _, text in local_tokens if text != "@")
    host = "".join(text for _, text in tokens[at + 1 :]) if at >= 0 else ""
    return local or "MISSING_MAILBOX", host or "MISSING_DOMAIN"


# -- BODYSTRUCTURE (RFC 3501 §7.4.2) -------------------------------------------


def bodystructure(raw: bytes, part: Part | None = None) -> JSON:
    """The extensible BODYSTRUCTURE of the message (or ``part``) as JSON."""
    return _structure(raw, part if part is not None else parse_message(raw))


def _structure(raw: bytes, part: Part) -> JSON:
    fields = part.fields
    disposition = None
    disp_value = _first(raw, fields, "content-disposition")
    if disp_value:
        tokens, dparams = _head_tokens(disp_value)
        if len(tokens) == 1 and tokens[0][0] == "t":
            disposition = [tokens[0][1], [list(p) for p in dparams] or None]
    lang_value = _first(raw, fields, "content-language")
    language = None
    if lang_value:
        language = [t for k, t in _mime_tokens(lang_value) if k == "t"] or None
    location = _first(raw, fields, "content-location")
    ext = {
        "disposition": disposition,
        "language": language,
        "location": _WS_RE.sub("", location) if location else None,
    }
    params = [list(p) for p in part.params] if part.params else None
    if part.is_multipart:
        return {
            "type": part.type,
            "subtype": part.subtype,
            "parts": [_structure(raw, child) for child in part.children],
            "params": params,
            **ext,
        }
    encoding = _first(raw, fields, "content-transfer-encoding")
    if not encoding or not _TOKEN_RE.fullmatch(encoding):
        encoding = "7bit"
    node: dict[str, JSON] = {
        "type": part.type,
        "subtype": part.subtype,
        "params": params,
        "id": _first(raw, fields, "content-id") or None,
        "description": _first(raw, fields, "content-description") or None,
        "encoding": encoding,
        "size": part.end - part.body_start,
    }
    if part.message is not None:
        node["envelope"] = envelope(raw, part.message)
        node["body"] = _structure(raw, part.message)
        node["lines"] = raw.count(b"\n", part.body_start, part.end)
    elif part.type.lower() == "text":
        node["lines"] = raw.count(b"\n", part.body_start, part.end)
    node["md5"] = _first(raw, fields, "content-md5") or None
    node.update(ext)
    return node


def render_envelope(env: JSON) -> bytes:
    """IMAP ``envelope`` syntax for a value from :func:`envelope`."""
    items = [
        writer.nstring(env["date"]),
        writer.nstring(env["subject"]),
        *(_addresses(env[k]) for k in ("from", "sender", "reply_to", "to", "cc", "bcc")),
        writer.nstring(env["in_reply_to"]),
        writer.nstring(env["message_id"]),
    ]
    return b"(" + b" ".join(items) + b")"


def _addresses(value: JSON) -> bytes:
    if not value:
        return b"NIL"
    return (
        b"("
        + b"".join(b"(" + b" ".join(writer.nstring(x) for x in addr) + b")" for addr in value)
        + b")"
    )


def _params_syntax(params: JSON) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(writer.string(k) + b" " + writer.string(v) for k, v in params) + b")"


def render_bodystructure(node: JSON, *, extensible: bool = True) -> bytes:
    """IMAP ``body`` syntax: BODYSTRUCTURE, or BODY with ``extensible=False``."""
    if "parts" in node:
        out = b"(" + b"".join(render_bodystructure(p, extensible=extensible) for p in node["parts"])
        out += b" " + writer.string(node["subtype"])
        if extensible:
            out += b" " + _params_syntax(node["params"]) + b" " + _extension(node)
        return out + b")"
    items = [
        writer.string(node["type"]),
        writer.string(node["subtype"]),
        _params_syntax(node["params"]),
        writer.nstring(node["id"]),
        writer.nstring(node["description"]),
        writer.string(node["encoding"]),
        b"%d" % node["size"],
    ]
    if "envelope" in node:
        items.append(render_envelope(node["envelope"]))
        items.append(render_bodystructure(node["body"], extensible=extensible))
    if "lines" in node:
        items.append(b"%d" % node["lines"])
    if extensible:
        items.append(writer.nstring(node["md5"]))
        items.append(_extension(node))
    return b"(" + b" ".join(items) + b")"


def _extension(node: JSON) -> bytes:
    """``body-fld-dsp SP body-fld-lang SP body-fld-loc``."""
    disp = node["disposition"]
    dsp = (
        b"NIL"
        if disp is None
        else (b"(" + writer.string(disp[0]) + b" " + _params_syntax(disp[1]) + b")")
    )
    lang = node["language"]
    lng = b"NIL" if not lang else b"(" + b" ".join(writer.string(t) for t in lang) + b")"
    return dsp + b" " + lng + b" " + writer.nstring(node["location"])


# -- sections (RFC 3501 §6.4.5) ---------------------------------------------------


def _message_parts(message: Part) -> list[Part]:
    """Numbered parts of a message: a multipart's children, else part 1 is
    the message itself (its body)."""
    return message.children if message.is_multipart else [message]


def _sub_parts(part: Part) -> list[Part]:
    if part.is_multipart:
        return part.children
    if part.message is not None:
        return _message_parts(part.message)
    return []


def find_part(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part at ``path`` (``(2, 1)`` for ``2.1``), ``None`` if absent."""
    current = root
    candidates = _message_parts(root)
    for number in path:
        if not 1 <= number <= len(candidates):
            return None
        current = candidates[number - 1]
        candidates = _sub_parts(current)
    return current


def walk(root: Part) -> Iterator[tuple[tuple[int, ...], Part]]:
    """Every numbered part with its path, depth first (``(1,)``, ``(1, 1)``...)."""
    yield from _walk((), _message_parts(root))


def _walk(prefix: tuple[int, ...], parts: list[Part]) -> Iterator[tuple[tuple[int, ...], Part]]:
    for number, part in enumerate(parts, 1):
        path = (*prefix, number)
        yield path, part
        yield from _walk(path, _sub_parts(part))


def section(raw: bytes, spec: Section, root: Part | None = None) -> bytes | None:
    """The octets of ``BODY[spec]``, or ``None`` when the part does not exist.

    ``root`` may be passed when the caller already parsed the message.
    HEADER, HEADER.FIELDS[.NOT] and TEXT after a part number need a
    ``message/rfc822`` part and apply to the encapsulated message.
    """
    root = root if root is not None else parse_message(raw)
    if not spec.part:
        target: Part | None = root
        if spec.text is None:
            return raw
    else:
        part = find_part(root, spec.part)
        if part is None:
            return None
        if spec.text is None:
            return raw[part.body_start : part.end]
        if spec.text == "MIME":
            return raw[part.start : part.body_start]
        target = part.message
    if target is None:
        return None
    if spec.text == "TEXT":
        return raw[target.body_start : target.end]
    if spec.text == "HEADER":
        return raw[target.start : target.body_start]
    return header_fields(raw, target, spec.fields, exclude=spec.text == "HEADER.FIELDS.NOT")


def header_fields(raw: bytes, part: Part, names: tuple[str, ...], *, exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT: the selected field lines as sent,
    in message order, followed by the blank line (CRLF)."""
    wanted = {n.lower() for n in names}
    out = bytearray()
    for f in part.fields:
        if (f.name in wanted) != exclude:
            out += raw[f.start : f.end]
            if not out.endswith(b"\n"):
                out += b"\r\n"
    out += b"\r\n"
    return bytes(out)


def partial(data: bytes, origin: int, length: int) -> bytes:
    """``<origin.length>`` (RFC 3501 §6.4.5): beyond the end is empty."""
    return data[origin : origin + length]
