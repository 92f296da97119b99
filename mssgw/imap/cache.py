"""The MIME cache: ENVELOPE and BODYSTRUCTURE computed once, at delivery.

``annotate`` is what the store's delivery path calls in its blob worker
thread (``Messages.annotate``; the store never imports this package, the
IMAP service installs the hook).  A message stored without the cache
(delivered while no IMAP service was installed, or by an older version) is
computed on first FETCH and the result written back, so the cost is paid
once either way.
"""

from __future__ import annotations

import json

from mssgw.imap import mime
from mssgw.store.delivery import MessageMeta


def annotate(raw: bytes) -> MessageMeta:
    """Message-ID, header size, ENVELOPE and BODYSTRUCTURE JSON of ``raw``."""
    root = mime.parse_message(raw)
    env = mime.envelope(raw, root)
    structure = mime.bodystructure(raw, root)
    message_id = env.get("message_id")
    return MessageMeta(
        message_id=message_id.strip() if isinstance(message_id, str) else None,
        envelope=dumps(env),
        bodystructure=dumps(structure),
        header_size=root.body_start - root.start,
    )


def dumps(value: mime.JSON) -> str:
    # ensure_ascii: 8-bit header octets are lone surrogates (surrogateescape),
    # which only survive as \\udcXX escapes.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def loads(text: str) -> mime.JSON:
    return json.loads(text)
