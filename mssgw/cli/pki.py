"""``mssgw pki``: the development PKI (SPEC TRUST-4, issue 2 item 4)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mssgw.cli._common import group


def register(sub: Any) -> None:
    pki = group(sub, "pki", "development PKI (never for production)")
    init = pki.add_parser(
        "init-dev",
        help="generate a look-alike IGC-Santé hierarchy and a signed liste blanche",
        description=(
            "Write under DIR a development root and intermediate CA, server certificates "
            "for N operators (opK.mssante.test), a professional and a structure client "
            "certificate, bad certificates (expired, revoked, unknown CA, unlisted), CRLs, "
            "a liste blanche signer and a signed liste blanche; DIR/manifest.json lists "
            "every file. See docs/trust.md."
        ),
    )
    init.add_argument("directory", metavar="DIR", type=Path, help="target folder (created)")
    init.add_argument("--operators", type=int, default=2, metavar="N", help="operators (default 2)")
    init.add_argument("--force", action="store_true", help="overwrite a non-empty DIR")
    init.set_defaults(handler=init_dev)


def init_dev(args: argparse.Namespace) -> int:
    from mssgw.tls import devpki

    manifest = devpki.init_dev(args.directory, args.operators, force=args.force)
    print(f"root CA       {manifest['root']}")
    print(f"anchors       {manifest['anchors']}")
    print(f"CRL           {manifest['crl']}")
    for op in manifest["operators"]:
        print(f"operator      {op['domain']}  {op['certificate']}")
    print(f"liste blanche {manifest['liste_blanche']}")
    print(f"manifest      {Path(args.directory).resolve() / 'manifest.json'}")
    return 0
