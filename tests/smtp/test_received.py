"""Trace header fields and the X-MSS-* scan."""

from __future__ import annotations

from datetime import UTC, datetime

from mssgw.smtp.received import TlsInfo, received, return_path
from mssgw.smtp.stats import HeaderSniffer, ListenerStats, scan_header_block

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TLS = TlsInfo("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256,
              "CN=mx.op2.mssante.test,OU=1,O=OP (2),ST=Bouches-du-Rhône (13),C=FR")


def test_received_is_ascii_folded_and_names_peer_and_tls() -> None:
    raw = received(helo="mx.op2.mssante.test", peer_ip="127.0.0.1", by="mx.op1.mssante.test",
                   protocol="ESMTPS", ident="abc123", when=WHEN, tls=TLS,
                   recipient="a@op1.mssante.test")
    text = raw.decode("ascii")
    assert text.startswith("Received: from mx.op2.mssante.test ([127.0.0.1])\r\n\t")
    assert "(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))" in text
    assert r"O=OP \(2\),ST=Bouches-du-Rhone \(13\)" in text
    assert "by mx.op1.mssante.test (mssgw) with ESMTPS id abc123" in text
    assert text.endswith("for <a@op1.mssante.test>;\r\n\tSun, 01 Mar 2026 12:00:00 +0000\r\n")
    assert all(len(line) < 998 for line in text.split("\r\n"))


def test_received_odd_helo_and_ipv6() -> None:
    text = received(helo="bad helo (x)", peer_ip="::1", by="h", protocol="ESMTPS", ident="i",
                    when=WHEN, tls=None).decode()
    assert text.startswith(r"Received: from [IPv6:::1] ([IPv6:::1]) (EHLO bad helo \(x\))")
    assert "using" not in text and ";\r\n\t" in text


def test_return_path() -> None:
    assert return_path("") == b"Return-Path: <>\r\n"
    assert return_path("a@b.fr") == b"Return-Path: <a@b.fr>\r\n"


def test_header_scan_and_counts() -> None:
    head = (b"Message-ID:\r\n <1@x>\r\nX-MSS-NIL: ACME\r\nx-mss-ins: o\r\nX-MSS-MES: FIN\r\n"
            b"X-MSS-CODECDA: 1\r\n\r\nX-MSS-NIL: in the body\r\n")
    sniffer = HeaderSniffer()
    for i in range(0, len(head), 5):
        sniffer.feed(head[i : i + 5])
    facts = sniffer.facts()
    assert facts.message_id == "<1@x>"
    assert facts.mss == {"x-mss-nil": "ACME", "x-mss-codecda": "1", "x-mss-ins": "o",
                         "x-mss-mes": "FIN"}
    stats = ListenerStats("mta")
    stats.count_headers(facts)
    stats.count_headers(scan_header_block(b"Subject: none\r\n\r\n"))
    assert stats.mss == {"x_mss_nil": 1, "x_mss_nil_missing": 1, "x_mss_codecda": 1,
                         "x_mss_ins_o": 1, "x_mss_mes_fin": 1}


def test_sniffer_is_bounded() -> None:
    sniffer = HeaderSniffer(limit=100)
    sniffer.feed(b"X-A: " + b"a" * 10_000)
    sniffer.feed(b"\r\n\r\n")
    assert sniffer.complete and len(sniffer._buf) <= 104
