"""Directory settings: the ``[directory]`` section of the configuration.

The dataclass lives in ``mssgw.config`` with every other section; this module
re-exports it for the directory code and adds the secret-file reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mssgw.config import DirectorySettings, ReplicaKind
from mssgw.errors import ConfigError

__all__ = ["DirectorySettings", "ReplicaKind", "from_settings", "read_secret"]

def from_settings(settings: Any) -> DirectorySettings:
    """The directory section of a ``Settings``, or the defaults."""
    found = getattr(settings, "directory", None)
    return found if isinstance(found, DirectorySettings) else DirectorySettings()


def read_secret(path: str, what: str) -> str:
    """A secret kept in its own file (never in the TOML), stripped."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
