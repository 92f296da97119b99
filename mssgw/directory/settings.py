"""Directory settings (the ``[directory]`` section once embedded in ``Settings``).

Until ``mssgw.config.Settings`` carries a ``directory`` field, code takes this
dataclass explicitly; ``from_settings`` finds it either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mssgw.errors import ConfigError

ReplicaKind = Literal["sql", "ldap"]


@dataclass(frozen=True)
class DirectorySettings:
    """Where the replica lives, where national data comes from, and the guards."""

    replica: ReplicaKind = "sql"
    ldap_url: str = ""
    ldap_bind_dn: str = ""
    ldap_password_file: str = ""
    ldap_base: str = "ou=mssante,dc=example,dc=org"
    fhir_url: str = "https://gateway.api.esante.gouv.fr/fhir/v2"
    fhir_api_key_file: str = ""
    publish_url: str = ""
    #: Credentials for ``--source ldap:URL`` (anonymous when empty).
    upstream_bind_dn: str = ""
    upstream_password_file: str = ""
    #: A full source that would remove more than this share of the national
    #: rows is refused (a truncated download must not empty the directory).
    max_removal_share: float = 0.10
    #: A source with more than this share of invalid lines is refused.
    max_invalid_share: float = 0.01
    cache_ttl: int = 300
    negative_ttl: int = 60
    lookup_timeout: float = 2.0
    cache_max_entries: int = 200_000
    batch_size: int = 2000


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
