"""Errors an operator sees.

Every refusal the CLI or the daemon shows to a person is a ``MssgwError``: one
line that names what is at fault (file, key, address) and what to do.  The CLI
prints ``str(error)`` and exits non-zero; it never prints a traceback for
these.  Anything else escaping is a bug.
"""


class MssgwError(Exception):
    """Base of every error that is meant for a person to read."""

    exit_code = 1


class ConfigError(MssgwError):
    """The configuration file or an environment override is invalid."""

    exit_code = 2


class StoreError(MssgwError):
    """The store (database or blob folder) refused an operation."""


class NotFound(StoreError):
    """A named object (domain, mailbox, credential) does not exist."""


class NoSuchFolder(NotFound):
    """The mailbox exists but has no folder of that name (IMAP: ``[TRYCREATE]``)."""


class Conflict(StoreError):
    """The operation would break a uniqueness or lifecycle rule."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or is at the wrong schema version."""

    exit_code = 3


def brief(exc: BaseException, limit: int = 200) -> str:
    """One line saying what went wrong, for a log or a refusal.

    Database errors wrap the driver's exception in ``orig``: its first line is
    the useful part (never the SQL statement or its parameters, which
    SQLAlchemy appends on later lines).
    """
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0][:limit] if text else type(orig).__name__
