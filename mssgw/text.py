"""ASCII predicates for protocol text.

Protocol numbers (SMTP reply codes, SIZE, ports, MODSEQs) are ASCII digits,
but ``str.isdigit`` is true for any Unicode digit: ``"²".isdigit()`` holds
and ``int("²")`` raises, and ``int("٣")`` is 3.  Everything that turns
received or configured text into a number checks it with ``is_digits``.
"""

from __future__ import annotations


def is_digits(text: str) -> bool:
    """One or more ASCII digits ``0``–``9``, nothing else."""
    return text.isascii() and text.isdigit()
