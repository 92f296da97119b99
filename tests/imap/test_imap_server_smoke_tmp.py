import asyncio, imaplib
from pathlib import Path
from typing import Any
from tests.imap.server_support import imap_env, message

async def test_smoke(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        await env.deliver(message(1))
        await env.deliver(message(2))
        def client():
            M = imaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
            print(M.capabilities)
            print(M.login(env.per, env.per_password))
            print(M.list())
            print(M.select("INBOX"))
            print(M.fetch("1:*", "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (Subject)])"))
            print(M.fetch("1", "(BODY[])"))
            print(M.store("1", "+FLAGS", "(\\Deleted $Label1)"))
            print(M.expunge())
            print(M.append("INBOX", "(\\Seen)", None, message(3)))
            print(M.search(None, "ALL"))
            print(M.uid("SEARCH", "SUBJECT", "message"))
            print(M.status("INBOX", "(MESSAGES UNSEEN UIDNEXT HIGHESTMODSEQ)"))
            print(M.logout())
        await asyncio.to_thread(client)
