"""Policy: pure functions that turn facts into a ``Decision``.

Edges (SMTP, IMAP) translate decisions into protocol replies; they never
invent codes of their own (see docs/architecture.md).
"""

from mssgw.policy.decision import Decision, DecisionKind

__all__ = ["Decision", "DecisionKind"]
