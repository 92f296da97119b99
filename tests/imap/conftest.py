"""Hypothesis budget for the IMAP protocol tests.

The ``mssgw-imap`` profile bounds every property test (examples and a
per-example deadline that also catches pathological slowness, i.e. hangs).
Raise the budget locally with ``MSSGW_FUZZ_EXAMPLES=5000``.
"""

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

settings.register_profile(
    "mssgw-imap",
    max_examples=int(os.environ.get("MSSGW_FUZZ_EXAMPLES", "150")),
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("CI") is not None,
)
