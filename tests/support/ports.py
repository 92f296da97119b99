"""Free loopback ports for listeners started by the tests."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable


def is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(offsets: Iterable[int], low: int = 20000, high: int = 60000) -> int:
    """A base N such that N + every offset is free on 127.0.0.1."""
    offsets = list(offsets)
    for _ in range(200):
        base = random.randrange(low, high, 100)
        if all(is_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port range found on 127.0.0.1")
