"""Parse + verify of the real liste blanche against a plain lxml parse.

Prints, in one run on the same file: the best-of-N time of a plain
``lxml.etree.fromstring`` (the baseline), of ``load_verified`` (safe parse,
signature, signer checks, index), of signxml's general verifier for
reference, the peak memory of each (fresh subprocess, VmHWM above
the interpreter with the modules imported: lxml allocates outside Python's
allocator, so tracemalloc would not see it), and domain lookups per second.
Targets (issue 3): parse + verify ≤ 2x the plain parse; lookups ≥ 1M/s.

    .venv/bin/python bench/trust_verify.py [--runs 15] [--file PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "listeblanchemssante-2025-02-28.xml"
)
AS_OF = datetime(2025, 3, 1, tzinfo=UTC)


def _plain(data: bytes) -> None:
    from lxml import etree

    etree.fromstring(data)


def _ours(data: bytes) -> None:
    from mssgw.trust.listeblanche import load_verified

    load_verified(data, at=AS_OF, anchors=None, expected_signer=None)


def _signxml(data: bytes) -> None:
    from lxml import etree
    from signxml import SignatureConfiguration, XMLVerifier

    from mssgw.trust.xmldsig import signer_chain

    signer = signer_chain(etree.fromstring(data)[-1])[0]
    config = SignatureConfiguration(verification_time=AS_OF)
    XMLVerifier().verify(data, x509_cert=signer, expect_config=config)


WORKLOADS = {"plain lxml parse": _plain, "mssgw load_verified": _ours, "signxml verify": _signxml}


def best_of(fn: object, data: bytes, runs: int) -> float:
    assert callable(fn)
    fn(data)  # warm up imports and caches
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn(data)
        best = min(best, time.perf_counter() - start)
    return best


def peak_rss_child(name: str, path: Path) -> None:
    """Subprocess entry: print the ru_maxrss growth (KiB) caused by one run."""
    data = path.read_bytes()
    import lxml.etree  # noqa: F401
    import signxml  # noqa: F401

    import mssgw.trust.listeblanche  # noqa: F401

    before = _hwm_kib()
    WORKLOADS[name](data)
    print(json.dumps({"kib": _hwm_kib() - before}))


def _hwm_kib() -> int:
    """Peak RSS of this process image (VmHWM).  Not ``ru_maxrss``: Linux
    carries the parent's peak over fork/exec into it, hiding the child's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss(name: str, path: Path) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, "--file", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out)["kib"]) / 1024


def lookups_per_second(path: Path) -> float:
    from mssgw.trust.listeblanche import load_verified

    liste = load_verified(path.read_bytes(), at=AS_OF, anchors=None, expected_signer=None)
    names = [*list(liste.domain_names())[:5000], *[f"absent{i}.example.org" for i in range(5000)]]
    rounds = 100
    start = time.perf_counter()
    for _ in range(rounds):
        for name in names:
            liste.dns_for(name)
    return rounds * len(names) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_rss_child(args.child, args.file)
        return 0
    data = args.file.read_bytes()
    print(f"file: {args.file} ({len(data) / 1e6:.1f} MB), best of {args.runs} runs")
    baseline = best_of(_plain, data, args.runs)
    for name, fn in WORKLOADS.items():
        seconds = best_of(fn, data, args.runs) if fn is not _plain else baseline
        print(
            f"{name:22s} {seconds * 1000:7.1f} ms  {seconds / baseline:4.2f}x baseline"
            f"  peak +{peak_rss(name, args.file):6.1f} MiB"
        )
    print(f"domain lookups (dns_for, half absent): {lookups_per_second(args.file) / 1e6:.1f} M/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
