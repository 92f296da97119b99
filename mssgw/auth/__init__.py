"""Client authentication shared by IMAP and SMTP submission.

``sasl`` (sans-IO mechanisms), ``identity`` (who authenticated and which
mailbox they opened), ``ratelimit`` (SPEC AUTH-4) and ``service`` (the
decisions, SPEC AUTH-2/3, BAL-3).  Nothing here knows a socket.
"""
