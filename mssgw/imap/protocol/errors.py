"""The one exception family the IMAP protocol core raises.

Anything else escaping the reader or the parser is a bug: the fuzz tests
check that arbitrary bytes only ever produce commands or these errors.
A server turns an error into a response with :func:`writer.error_response`.
"""

from __future__ import annotations


class ImapProtocolError(Exception):
    """A client sent something we refuse.

    ``tag`` is the command tag when it could be read (``None`` means answer
    with an untagged response).  ``status`` is the response condition the
    server should send: ``"NO"`` (understood, refused) or ``"BAD"`` (syntax).
    ``code`` is a response code without brackets, e.g. ``"TOOBIG"`` or
    ``"BADCHARSET (US-ASCII UTF-8)"``.  ``fatal`` means the byte stream can no
    longer be trusted (framing lost): the server sends ``* BYE`` and closes.
    """

    status = "NO"

    def __init__(
        self,
        message: str,
        *,
        tag: str | None = None,
        code: str | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag
        self.code = code
        self.fatal = fatal

    def with_tag(self, tag: str | None) -> ImapProtocolError:
        """Attach the tag once known, keeping an already known one."""
        if self.tag is None:
            self.tag = tag
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, tag={self.tag!r}, "
            f"code={self.code!r}, fatal={self.fatal!r})"
        )


class BadCommand(ImapProtocolError):
    """Syntax error or protocol violation: answered with ``BAD``."""

    status = "BAD"
