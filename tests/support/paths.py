"""Where the project's shared artefacts are (``shared/`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """``$MSSGW_SHARED_DIR``, else ``<checkout>/../shared``, else ``/work/shared``."""
    candidates = [
        os.environ.get("MSSGW_SHARED_DIR", ""),
        str(REPO.parent / "shared"),
        "/work/shared",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "data").is_dir():
            return Path(candidate)
    raise FileNotFoundError(
        "shared/ (with data/listeblanchemssante-2025-02-28.xml) not found beside the checkout; "
        "set MSSGW_SHARED_DIR"
    )


SAMPLE_LISTE_BLANCHE = shared_dir() / "data" / "listeblanchemssante-2025-02-28.xml"
