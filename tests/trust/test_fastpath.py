"""The fast path reads exactly what the tree path reads, or steps aside.

``mssgw.trust.fastpath`` takes the signed content as a slice of the raw
file when the file is provably canonical.  The property that matters: for
any input, ``load_verified`` gives the same outcome (refusal, or the same
index and display data) whether the fast path is allowed or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from mssgw.trust import fastpath
from mssgw.trust.listeblanche import (
    Entry,
    ListeBlanche,
    ListeBlancheError,
    load_verified,
    parse_document,
    sign_liste_blanche,
)
from mssgw.trust.xmldsig import verify_enveloped
from tests.support.paths import SAMPLE_LISTE_BLANCHE
from tests.tls.pki import DevPki

AS_OF = datetime(2025, 3, 1, tzinfo=UTC)


@contextmanager
def tree_path_only() -> Iterator[None]:
    with mock.patch.object(fastpath, "locate", return_value=None):
        yield


def summary(liste: ListeBlanche) -> tuple[Any, ...]:
    """Everything a ListeBlanche tells its users."""
    names = sorted(liste.domain_names())
    return (
        liste.generated_at,
        liste.entries,
        liste.domains,
        liste.signer.serial_number,
        liste.skipped,
        {name: liste.dns_for(name) for name in names},
        [liste.info(name) for name in names],
    )


def outcome(data: bytes, at: datetime, anchors: Any = None) -> tuple[Any, ...] | str:
    try:
        return summary(load_verified(data, at=at, anchors=anchors, expected_signer=None))
    except ListeBlancheError:
        return "refused"


def both_outcomes(data: bytes, at: datetime, anchors: Any = None) -> tuple[Any, Any]:
    fast = outcome(data, at, anchors)
    with tree_path_only():
        tree = outcome(data, at, anchors)
    return fast, tree


def takes_fast_path(data: bytes) -> bool:
    layout = fastpath.locate(data)
    if layout is None:
        return False
    if fastpath.read_fields(layout) is not None:
        return True
    expanded = fastpath.expand_empty(layout)
    return expanded is not None and fastpath.read_fields(expanded) is not None


# ---------------------------------------------------------------- the real list


@pytest.fixture(scope="module")
def sample() -> bytes:
    return SAMPLE_LISTE_BLANCHE.read_bytes()


def test_real_list_takes_the_fast_path(sample: bytes) -> None:
    assert takes_fast_path(sample)


def test_real_list_slice_is_the_canonical_form_lxml_computes(sample: bytes) -> None:
    layout = fastpath.locate(sample)
    assert layout is not None
    _, canonical = verify_enveloped(parse_document(sample))
    assert layout.canonical() == canonical


def test_real_list_same_result_on_both_paths(sample: bytes) -> None:
    fast, tree = both_outcomes(sample, AS_OF)
    assert fast != "refused" and fast == tree
    liste = load_verified(sample, at=AS_OF, anchors=None, expected_signer=None)
    with tree_path_only():
        reference = load_verified(sample, at=AS_OF, anchors=None, expected_signer=None)
    assert liste.sha256 == reference.sha256


def test_real_list_tampered_is_refused_on_the_fast_path(sample: bytes) -> None:
    tampered = sample.replace(b"<Nom>1001-services", b"<Nom>1002-services", 1)
    assert takes_fast_path(tampered)
    with pytest.raises(ListeBlancheError, match="digest mismatch"):
        load_verified(tampered, at=AS_OF, anchors=None, expected_signer=None)


def test_real_list_expired_signer_is_refused_on_the_fast_path(sample: bytes) -> None:
    with pytest.raises(ListeBlancheError, match="expired"):
        load_verified(
            sample, at=datetime(2026, 11, 26, tzinfo=UTC), anchors=None, expected_signer=None
        )


# ---------------------------------------------------------------- generated lists

#: Text with everything canonical form escapes or keeps, and non-ASCII.
FIELD_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("&<>\"' \t\n\r.=,é€𝄞"),
        st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x2FFF),
    ),
    max_size=12,
)
DOMAIN = st.from_regex(r"[a-z0-9-]{1,10}(\.[a-z]{2,5}){1,2}\.?", fullmatch=True)
DN = st.builds(
    lambda cn, o: f"CN={cn},O={o},C=FR",
    st.from_regex(r"[a-z][a-z0-9.-]{0,10}", fullmatch=True),
    st.text(alphabet="ABCD &'é-", min_size=1, max_size=8).map(str.strip).filter(bool),
)
ENTRY = st.builds(Entry, DOMAIN, DN, FIELD_TEXT, FIELD_TEXT, FIELD_TEXT)


@pytest.fixture(scope="module")
def signer(dev_pki: DevPki) -> Any:
    return dev_pki.signer()


def sign(entries: list[Entry], signer: Any) -> bytes:
    cert, key = signer
    return sign_liste_blanche(entries, datetime(2026, 1, 1, tzinfo=UTC), cert, key)


NOW = datetime.now(UTC)


FIXTURES_OK = [HealthCheck.function_scoped_fixture]  # module-scoped, read only


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES_OK)
@given(entries=st.lists(ENTRY, max_size=6))
def test_generated_lists_read_the_same_on_both_paths(
    entries: list[Entry], signer: Any, dev_pki: DevPki
) -> None:
    data = sign(entries, signer)
    fast, tree = both_outcomes(data, NOW, dev_pki.anchors)
    assert fast != "refused" and fast == tree
    # lxml writes CR as "&#13;", outside the fast grammar; all else is canonical.
    fields = "".join(e.description + e.responsable_contact + e.support_contact for e in entries)
    assert takes_fast_path(data) == ("\r" not in fields)


@pytest.fixture(scope="module")
def rich_list(signer: Any) -> bytes:
    entries = [
        Entry("a.test", "CN=a,O=A & B,C=FR", "x > y & z < w", "r", "s"),
        Entry("b.test", "CN=b,C=FR", "MSSanté", "\u00a0r", "s"),
        Entry("b.test", "CN=b2,C=FR", "deux", "r", ""),
    ]
    data = sign(entries, signer)
    assert takes_fast_path(data)
    return data


def test_rich_list_same_on_both_paths(rich_list: bytes, dev_pki: DevPki) -> None:
    fast, tree = both_outcomes(rich_list, NOW, dev_pki.anchors)
    assert fast != "refused" and fast == tree


#: Changes that keep the canonical form (so the signature stays valid) but
#: leave the fast grammar: the fast path must step aside, the tree path accept.
SAME_CANONICAL = {
    "literal >": (b"x &gt; y", b"x > y"),
    "character reference": (b"A &amp; B", b"A &#38; B"),
    "CR LF line ends": (b"\n", b"\r\n"),
    "comment between entries": (b"</Domaine>", b"</Domaine><!-- c -->"),
    "space in a tag": (b"<Nom>", b"<Nom >"),
    "CDATA": (b"<Description>deux", b"<Description><![CDATA[deux]]>"),
    "unused namespace": (b'schema">', b'schema" xmlns:u="urn:unused">'),
    "space in an empty-element tag": (b"<SupportContact/>", b"<SupportContact />"),
    "single-quoted declaration": (b'version="1.0"', b"version='1.0'"),
    "byte order mark": (b"<?xml", b"\xef\xbb\xbf<?xml"),
}


@pytest.mark.parametrize("change", sorted(SAME_CANONICAL))
def test_layouts_outside_the_grammar_fall_back(
    rich_list: bytes, dev_pki: DevPki, change: str
) -> None:
    old, new = SAME_CANONICAL[change]
    assert old in rich_list
    data = rich_list.replace(old, new, 1 if old != b"\n" else -1)
    fast, tree = both_outcomes(data, NOW, dev_pki.anchors)
    assert fast != "refused" and fast == tree
    assert not takes_fast_path(data)


def test_empty_fields_either_way_take_the_fast_path(rich_list: bytes, dev_pki: DevPki) -> None:
    """lxml writes an empty field ``<X/>``, canonical form ``<X></X>``."""
    assert b"<SupportContact/>" in rich_list
    expanded = rich_list.replace(b"<SupportContact/>", b"<SupportContact></SupportContact>")
    assert takes_fast_path(expanded)
    assert both_outcomes(expanded, NOW, dev_pki.anchors) == both_outcomes(
        rich_list, NOW, dev_pki.anchors
    )


#: Changes the tree path refuses; the fast path must not accept them either.
REFUSED = {
    "tampered name": (b"<Nom>a.test", b"<Nom>c.test"),
    "invalid UTF-8": (b"MSSant\xc3\xa9", b"MSSant\xc3\x28"),
    "non-character U+FFFE": (b"MSSant\xc3\xa9", b"MSSant\xef\xbf\xbe"),
    "control character": (b"deux", b"de\x01ux"),
    "trailing garbage": (b"</ListeBlancheMSSante>", b"</ListeBlancheMSSante>x"),
    "undefined entity": (b"A &amp; B", b"A &b; B"),
    "second signature inside": (b"</SignatureValue>", b"</SignatureValue><Signature/>"),
    "extra entry after the list": (
        b"</ListeDomaines>",
        b"</ListeDomaines><ListeDomaines></ListeDomaines>",
    ),
    "entry outside the list": (
        b"</ListeDomaines>",
        b"<Domaine><Nom>evil.test</Nom></Domaine></ListeDomaines>",
    ),
}


@pytest.mark.parametrize("change", sorted(REFUSED))
def test_broken_or_tampered_refused_on_both_paths(
    rich_list: bytes, dev_pki: DevPki, change: str
) -> None:
    old, new = REFUSED[change]
    assert old in rich_list
    data = rich_list.replace(old, new, 1)
    assert both_outcomes(data, NOW, dev_pki.anchors) == ("refused", "refused")


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    position=st.floats(min_value=0, max_value=1),
    cut=st.integers(min_value=0, max_value=3),
    insert=st.binary(max_size=3)
    | st.sampled_from(
        [b"<", b">", b"&", b"&amp;", b"&#13;", b"\r", b"\x00", b"<!--x-->", b"\xff", b"]]>", b'"']
    ),
)
def test_any_byte_change_gives_the_same_outcome_on_both_paths(
    rich_list: bytes, dev_pki: DevPki, position: float, cut: int, insert: bytes
) -> None:
    at = int(position * len(rich_list))
    data = rich_list[:at] + insert + rich_list[at + cut :]
    fast, tree = both_outcomes(data, NOW, dev_pki.anchors)
    assert fast == tree


def test_signature_parsed_alone_equals_signature_in_the_document(rich_list: bytes) -> None:
    layout = fastpath.locate(rich_list)
    assert layout is not None
    from lxml.etree import XMLParser

    alone = fastpath.parse_signature(layout, XMLParser())
    root = etree.fromstring(rich_list)
    inside = root[-1]
    c14n = {"method": "c14n", "exclusive": True, "with_comments": False}
    assert etree.tostring(alone[0], **c14n) == etree.tostring(inside[0], **c14n)
    assert re.search(rb"<SignedInfo", etree.tostring(alone[0], **c14n))


@pytest.mark.filterwarnings("ignore::UserWarning")  # cryptography's, on the damaged names
def test_damaged_signer_certificate_is_refused_not_a_crash(
    rich_list: bytes, dev_pki: DevPki
) -> None:
    """KeyInfo is outside the signature: a byte changed in the certificate's
    names or extensions leaves its key (and so the signature) valid.  Found by
    the test above: such lists escaped as ValueError, TypeError or
    InvalidVersion from the certificate checks instead of being refused."""
    start = rich_list.index(b"<X509Certificate>") + len(b"<X509Certificate>")
    for offset in range(0, 400, 2):
        for char in b"AB/":
            damaged = rich_list[: start + offset] + bytes([char]) + rich_list[start + offset + 1 :]
            if damaged == rich_list:
                continue
            fast, tree = both_outcomes(damaged, NOW, dev_pki.anchors)
            assert (fast, tree) == ("refused", "refused"), (offset, chr(char))
