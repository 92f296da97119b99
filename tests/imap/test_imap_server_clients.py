"""Real clients over TLS: imaplib, imapclient, aioimaplib; STARTTLS; EXTERNAL; delegation.

The core flow runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import imaplib
import re
import ssl
from pathlib import Path
from typing import Any

import aioimaplib
import imapclient
import pytest

from tests.imap.server_support import Raw, imap_env, message

MULTIPART = (
    b"From: a@op2.mssante.test\r\nTo: b@op1.mssante.test\r\nSubject: XDM/1.0/DDM+ compte rendu\r\n"
    b"Message-ID: <mp@test>\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="BND"\r\n\r\n'
    b"--BND\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nVoir pi\xc3\xa8ce jointe.\r\n"
    b"--BND\r\nContent-Type: application/zip; name=IHE_XDM.ZIP\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename=IHE_XDM.ZIP\r\n"
    b"\r\n" + base64.encodebytes(bytes(range(256)) * 300).replace(b"\n", b"\r\n") + b"--BND--\r\n"
)


def _literal(data: Any) -> bytes:
    return data[0][1] if isinstance(data[0], tuple) else b""


async def test_imaplib_core_flow(
    tmp_path: Path, trust_space: dict[str, Any], backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    async with imap_env(tmp_path, trust_space, url=url) as env:
        for n in range(1, 4):
            await env.deliver(message(n))
        await env.deliver(MULTIPART)

        def session() -> dict[str, Any]:
            out: dict[str, Any] = {}
            m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
            typ, _ = m.login(env.per, env.per_password)
            assert typ == "OK"
            typ, folders = m.list()
            out["folders"] = b" ".join(folders)
            typ, data = m.select("INBOX")
            assert data == [b"4"]
            out["permanentflags"] = m.untagged_responses.get("PERMANENTFLAGS")
            out["uidvalidity"] = m.untagged_responses["UIDVALIDITY"][0]
            typ, data = m.fetch("4", "(RFC822.SIZE BODY.PEEK[])")
            size = int(re.search(rb"RFC822.SIZE (\d+)", data[0][0]).group(1))  # type: ignore[union-attr]
            out["size_matches"] = size == len(_literal(data)) == len(MULTIPART)
            typ, data = m.store("1", "+FLAGS", r"(\Flagged $Etiquette)")
            out["store"] = data
            typ, data = m.uid("COPY", "1:2", "Archive")
            out["copy"] = typ, m.untagged_responses.get("COPYUID")
            typ, data = m._simple_command("UID", "MOVE", "3", "Trash")
            out["move"] = typ, m.untagged_responses.pop("EXPUNGE", None)
            typ, data = m.search(None, "ALL")
            out["after_move"] = data
            typ, data = m.store("1", "+FLAGS", r"(\Deleted)")
            typ, data = m.expunge()
            out["expunged"] = data
            typ, data = m.append("Sent", r"(\Seen)", None, message(9))
            out["append"] = typ, data
            typ, data = m.status("Sent", "(MESSAGES UNSEEN UIDNEXT)")
            out["status"] = data
            typ, data = m.uid("SEARCH", "SUBJECT", "XDM")
            out["search"] = data
            m.logout()
            # A second session: UIDVALIDITY stable, keywords kept.
            m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
            m.login(env.per, env.per_password)
            m.select("Archive")
            out["uidvalidity_archive"] = m.untagged_responses["UIDVALIDITY"][0]
            typ, data = m.fetch("1:*", "(FLAGS)")
            out["archive_flags"] = data
            m.select("INBOX")
            out["uidvalidity_again"] = m.untagged_responses["UIDVALIDITY"][0]
            m.logout()
            return out

        out = await asyncio.to_thread(session)
    assert b"\\Sent" in out["folders"] and b"\\Trash" in out["folders"]
    assert b"\\*" in out["permanentflags"][0]
    assert out["size_matches"]
    assert b"$Etiquette" in out["store"][0] and b"\\Flagged" in out["store"][0]
    assert out["copy"][0] == "OK" and out["copy"][1][0].endswith(b" 1:2 1:2")
    assert out["move"] == ("OK", [b"3"])
    assert out["after_move"] == [b"1 2 3"]
    assert out["expunged"] == [b"1"]
    assert out["append"][0] == "OK" and b"APPENDUID" in out["append"][1][0]
    assert out["status"][0].endswith(b"(MESSAGES 1 UNSEEN 0 UIDNEXT 2)")
    assert out["search"] == [b"4"]
    assert out["uidvalidity"] == out["uidvalidity_again"]
    assert b"$Etiquette" in out["archive_flags"][0]


async def test_imapclient_thunderbird_patterns(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        await env.deliver(message(1, subject="=?utf-8?q?R=C3=A9sultats?="))
        await env.deliver(MULTIPART)

        def session() -> dict[str, Any]:
            out: dict[str, Any] = {}
            c = imapclient.IMAPClient(
                "127.0.0.1", port=env.imaps, ssl=True, ssl_context=env.client_context()
            )
            c.login(env.per, env.per_password)
            out["caps"] = c.capabilities()
            out["id"] = c.id_({"name": "Thunderbird", "version": "128.0"})
            c.enable("CONDSTORE")
            sel = c.select_folder("INBOX")
            out["select"] = sel
            fields = (
                "From To Cc Bcc Subject Date Message-ID Priority X-Priority References "
                "Newsgroups In-Reply-To Content-Type Reply-To"
            )
            out["headers"] = c.fetch(
                [1, 2], ["UID", "RFC822.SIZE", "FLAGS", f"BODY.PEEK[HEADER.FIELDS ({fields})]"]
            )
            chunks = []
            offset = 0
            while True:
                data = c.fetch([2], [f"BODY.PEEK[]<{offset}.65536>"])[2]
                key = next(k for k in data if k.startswith(b"BODY[]"))
                out.setdefault("chunk_keys", []).append(key)
                chunks.append(data[key])
                if len(data[key]) < 65536:
                    break
                offset += 65536
            out["body"] = b"".join(chunks)
            out["mime2"] = c.fetch([2], ["BODY.PEEK[2.MIME]", "BODYSTRUCTURE"])[2]
            out["unseen_after_peek"] = c.search(["UNSEEN"])
            out["polls"] = [
                c.folder_status("Sent", ["MESSAGES", "UIDNEXT", "UNSEEN"]) for _ in range(3)
            ]
            modseq = sel[b"HIGHESTMODSEQ"]
            c.add_flags([1], [imapclient.SEEN])
            out["changed"] = c.fetch([1, 2], ["FLAGS"], modifiers=[f"CHANGEDSINCE {modseq}"])
            out["namespace"] = c.namespace()
            out["special"] = c.find_special_folder(b"\\Sent")
            c.move([1], "Archive")
            out["inbox_after_move"] = c.search()
            c.select_folder("Archive")
            out["archive"] = c.search()
            c.logout()
            return out

        out = await asyncio.to_thread(session)
    assert {b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"NAMESPACE", b"ID", b"ENABLE"} <= set(
        out["caps"]
    )
    assert {b"LITERAL+", b"CONDSTORE", b"UNSELECT"} <= set(out["caps"])
    assert b"mssgw" in out["id"][0]
    assert out["select"][b"EXISTS"] == 2 and b"\\*" in out["select"][b"PERMANENTFLAGS"]
    first = out["headers"][1]
    key = next(k for k in first if k.startswith(b"BODY[HEADER.FIELDS (FROM TO CC BCC"))
    assert key.endswith(b"IN-REPLY-TO CONTENT-TYPE REPLY-TO)]")
    assert first[key].startswith(b"From: Dr A")
    assert out["headers"][2][b"RFC822.SIZE"] == len(MULTIPART)
    assert out["body"] == MULTIPART
    assert out["chunk_keys"][0] == b"BODY[]<0>" and out["chunk_keys"][1] == b"BODY[]<65536>"
    assert out["mime2"][b"BODY[2.MIME]"].startswith(b"Content-Type: application/zip")
    assert b"IHE_XDM.ZIP" in repr(out["mime2"][b"BODYSTRUCTURE"]).encode()
    assert out["unseen_after_peek"] == [1, 2]
    assert all(p[b"MESSAGES"] == 0 for p in out["polls"])
    assert list(out["changed"]) == [1] and b"MODSEQ" in out["changed"][1]
    assert out["namespace"].personal[0][1] == "/"
    assert out["special"] == "Sent"
    assert out["inbox_after_move"] == [2] and out["archive"] == [1]


async def test_aioimaplib_session_and_push(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        await env.deliver(message(1))
        client = aioimaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
        await client.wait_hello_from_server()
        assert (await client.login(env.per, env.per_password)).result == "OK"
        assert (await client.select("INBOX")).result == "OK"
        idle = await client.idle_start(timeout=10)
        await env.deliver(message(2))
        pushed = await client.wait_server_push(timeout=5)
        client.idle_done()
        await asyncio.wait_for(idle, 5)
        fetched = await client.uid("fetch", "1:*", "(UID FLAGS)")
        await client.logout()
    assert any(b"2 EXISTS" in (p if isinstance(p, bytes) else p.encode()) for p in pushed)
    assert fetched.result == "OK" and b"UID 2" in b" ".join(
        x for x in fetched.lines if isinstance(x, bytes)
    )


async def test_starttls_port_refuses_clear_passwords(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        raw = await Raw.connect(env.imap, None)
        caps = (await raw.command("CAPABILITY"))[0]
        assert b"STARTTLS" in caps and b"LOGINDISABLED" in caps and b"AUTH=" not in caps
        refused = await raw.command(f'LOGIN "{env.per}" "{env.per_password}"')
        assert refused[-1].startswith(b"t2 NO [PRIVACYREQUIRED]")
        refused = await raw.command("AUTHENTICATE PLAIN")
        assert b" NO " in refused[-1]
        # Pipelined bytes after STARTTLS would have been sent in clear: refused.
        await raw.send(b"t9 STARTTLS\r\nt10 NOOP\r\n")
        lines = await raw.until(b"t9")
        assert lines[-1].startswith(b"t9 OK")
        assert (await raw.line()).startswith(b"* BYE")
        await raw.close()

        def upgrade() -> tuple[Any, ...]:
            m = imaplib.IMAP4("127.0.0.1", env.imap)
            m.starttls(ssl_context=env.client_context())
            caps = m.capabilities
            typ, _ = m.login(env.per, env.per_password)
            typ2, _ = m.select("INBOX")
            m.logout()
            return caps, typ, typ2

        caps, typ, typ2 = await asyncio.to_thread(upgrade)
        assert "AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps
        assert (typ, typ2) == ("OK", "OK")


async def test_external_and_delegation(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        await env.deliver(message(1, subject="pour le secretariat"), env.org)
        # CPS-like certificate: EXTERNAL with no authzid opens the PER mailbox.
        raw = await Raw.connect(env.imaps, env.client_context("professional"))
        ok = await raw.command("AUTHENTICATE EXTERNAL =")
        assert ok[-1].startswith(b"t1 OK"), ok
        assert (await raw.command("SELECT INBOX"))[
            0
        ] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
        await raw.close()
        # ...and with the ORG address as authorisation identity, the ORG mailbox.
        raw = await Raw.connect(env.imaps, env.client_context("professional"))
        authzid = base64.b64encode(env.org.encode()).decode()
        assert (await raw.command(f"AUTHENTICATE EXTERNAL {authzid}"))[-1].startswith(b"t1 OK")
        lines = await raw.command("SELECT INBOX")
        assert b"* 1 EXISTS\r\n" in lines
        await raw.close()
        # Without a certificate, EXTERNAL fails but the session stays usable.
        raw = await Raw.connect(env.imaps, env.client_context())
        failed = await raw.command("AUTHENTICATE EXTERNAL =")
        assert failed[-1].startswith(b"t1 NO [AUTHENTICATIONFAILED]")
        # The delegate's password for the ORG mailbox (the documented scheme).
        await raw.login(env.org, env.org_password)
        await raw.command("SELECT INBOX")
        lines = await raw.command("UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)])")
        assert b"pour le secretariat" in lines[0]
        await raw.close()
        # An untrusted certificate does not break the handshake (TLS-3).
        ctx = env.client_context()
        bad = trust_space["bad"]["unknown_ca"]
        ctx.load_cert_chain(bad["certificate"], bad["key"])
        raw = await Raw.connect(env.imaps, ctx)
        failed = await raw.command("AUTHENTICATE EXTERNAL =")
        assert failed[-1].startswith(b"t1 NO")
        await raw.close()


async def test_sasl_plain_and_login_exchanges(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        raw = await Raw.connect(env.imaps, env.client_context())
        await raw.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert await raw.line() == b"+ \r\n"
        plain = base64.b64encode(b"\x00" + env.per.encode() + b"\x00" + env.per_password.encode())
        await raw.send(plain + b"\r\n")
        ok = await raw.until(b"a1")
        assert ok[-1].startswith(b"a1 OK [CAPABILITY")
        await raw.close()
        raw = await Raw.connect(env.imaps, env.client_context())
        await raw.send(b"a1 AUTHENTICATE LOGIN\r\n")
        assert await raw.line() == b"+ " + base64.b64encode(b"Username:") + b"\r\n"
        await raw.send(base64.b64encode(env.per.encode()) + b"\r\n")
        await raw.line()
        await raw.send(b"*\r\n")
        assert (await raw.line()).startswith(b"a1 BAD")
        wrong = base64.b64encode(b"\x00" + env.per.encode() + b"\x00nope").decode()
        assert (await raw.command(f"AUTHENTICATE PLAIN {wrong}"))[-1].startswith(
            b"t1 NO [AUTHENTICATIONFAILED]"
        )
        await raw.close()


def test_client_context_is_tls12_compatible() -> None:
    # The mssante profile allows only TLS 1.2 suites; Python's default client copes.
    assert ssl.HAS_TLSv1_2
