"""A 25 MB message (the patient cap of SPEC FLOW-6) arrives byte-identical."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mssgw.smtp.data import stuff
from tests.smtp.inbound_support import add_mailbox, connected, sender_context, stored
from tests.support.gateway import running_gateway

SIZE = 25 * 1024 * 1024


def big_message() -> bytes:
    head = (
        b"From: dr.martin@op2.mssante.test\r\nTo: a@op1.mssante.test\r\n"
        b"Subject: XDM/1.0/DDM+big\r\nMessage-ID: <big25@op2.mssante.test>\r\n"
        b"X-MSS-NIL: LOGICIEL-1.0\r\nMIME-Version: 1.0\r\n\r\n"
    )
    lines = []
    n = 0
    size = len(head)
    while size < SIZE:
        # Every 997th line starts with a period (dot-stuffed on the wire); 8-bit bytes too.
        lead = b"." if n % 997 == 0 else b""
        line = lead + b"%08d " % n + os.urandom(30).hex().encode() + b"\xc3\xa9\r\n"
        lines.append(line)
        size += len(line)
        n += 1
    return head + b"".join(lines)


async def test_25_mb_message_is_stored_byte_identical(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        original = big_message()
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        mail = f"MAIL FROM:<dr.martin@op2.mssante.test> SIZE={len(original)}"
        assert (await c.cmd(mail)).code == 250
        assert (await c.cmd(f"RCPT TO:<{rcpt}>")).code == 250
        assert (await c.cmd("DATA")).code == 354
        await c.send(stuff(original))
        reply = await c.reply(wait=120)
        assert (reply.code, reply.enhanced) == (250, "2.0.0"), reply
        await c.close()
        (row,) = await stored(gw.store, "<big25@op2.mssante.test>")
        blob = (await gw.store.contents.read_one(row.blob_id))
        assert blob.endswith(original)
        head = blob[: len(blob) - len(original)]
        assert head.startswith(b"Return-Path: <dr.martin@op2.mssante.test>\r\nReceived: ")
        assert head.count(b"\r\n") < 10
        assert row.size == len(blob)
        # The spool file was unlinked from the start: nothing left behind.
        assert list((gw.settings.state_dir / "spool").iterdir()) == []
