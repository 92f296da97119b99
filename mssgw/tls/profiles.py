"""TLS profiles (SPEC TLS-1, TLS-2).

``mssante``: the Référentiel #2 ECO.1.1.1–1.1.3 profile: TLS 1.2 only and
exactly four ECDHE-RSA suites.  ``modern`` [A]: the same TLS 1.2 suites
plus TLS 1.3 (whose suites OpenSSL chooses; Python cannot restrict them and
all three defaults are AEAD).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

ProfileName = Literal["mssante", "modern"]

#: OpenSSL names of the four suites of Réf. #2 ECO.1.1.3, in preference order.
MSSANTE_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
)


@dataclass(frozen=True)
class Profile:
    """Protocol bounds and TLS 1.2 cipher list of one profile."""

    name: ProfileName
    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion
    ciphers: tuple[str, ...] = MSSANTE_CIPHERS


PROFILES: dict[str, Profile] = {
    "mssante": Profile("mssante", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2),
    "modern": Profile("modern", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown TLS profile {name!r}; expected one of {', '.join(PROFILES)}"
        ) from None


def apply_profile(ctx: ssl.SSLContext, profile: Profile) -> None:
    """Set versions, suites and hardening options on ``ctx``."""
    ctx.minimum_version = profile.minimum
    ctx.maximum_version = profile.maximum
    ctx.set_ciphers(":".join(profile.ciphers))
    ctx.options |= (
        ssl.OP_NO_COMPRESSION  # CRIME
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
        | ssl.OP_NO_RENEGOTIATION
    )
