"""STARTTLS, LOGIN, AUTHENTICATE (RFC 3501 §6.2, RFC 4959 SASL-IR).

The SASL exchange itself is ``mssgw.auth.sasl``; the decision is
``mssgw.auth.service``.  This module only translates: challenges into
``+ base64`` continuations, failures into ``NO [AUTHENTICATIONFAILED]`` (the
same answer whatever the reason, so that accounts cannot be probed), a
rate-limited attempt into ``NO [UNAVAILABLE]``.
"""

from __future__ import annotations

import logging

from mssgw.auth.identity import Identity
from mssgw.auth.sasl import (
    PASSWORD_MECHANISMS,
    BearerToken,
    Challenge,
    Done,
    ExternalCredentials,
    Failed,
    PasswordCredentials,
    Step,
    mechanism,
)
from mssgw.auth.service import AuthFailure, Context
from mssgw.imap.commands.misc import capabilities
from mssgw.imap.protocol import SaslResponse, writer
from mssgw.imap.protocol import commands as c
from mssgw.imap.session import Action, Refusal, Session, State

log = logging.getLogger(__name__)


def _context(session: Session) -> Context:
    conn = session.connection
    return Context(ip=conn.ip, protocol="imap", tls=conn.tls_description)


async def starttls(session: Session, cmd: c.StartTLS) -> Action:
    if session.connection.tls or not session.connection.starttls:
        raise Refusal("TLS is already active", bad=True)
    session.ok(cmd.tag, "Begin TLS negotiation now")
    return Action.STARTTLS


async def login(session: Session, cmd: c.Login) -> None:
    if not session.connection.tls:
        # RFC 3501 §6.2.3 / LOGINDISABLED: never a password in clear.
        raise Refusal("start TLS first (STARTTLS)", code=writer.codes.PRIVACYREQUIRED)
    try:
        user, password = cmd.username.decode("utf-8"), cmd.password.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal("credentials must be UTF-8", bad=True) from None
    await _password(session, cmd.tag, PasswordCredentials(user, password))


async def authenticate(session: Session, cmd: c.Authenticate) -> Action | None:
    if not session.connection.tls:
        raise Refusal("start TLS first (STARTTLS)", code=writer.codes.PRIVACYREQUIRED)
    mech = mechanism(cmd.mechanism)
    if mech is None:
        raise Refusal(f"mechanism {cmd.mechanism[:20]} is not supported", bad=False)
    step = mech.start(cmd.initial_response)
    session.sasl = (cmd.tag, mech)
    return await _advance(session, cmd.tag, step)


async def sasl_step(session: Session, response: SaslResponse) -> Action | None:
    if session.sasl is None or session.sasl[0] != response.tag:
        session.send(writer.bad(response.tag, "no authentication in progress"))
        return None
    tag, mech = session.sasl
    if response.data is None:  # RFC 3501 §6.2.2: "*" cancels
        session.sasl = None
        session.send(writer.bad(tag, "AUTHENTICATE cancelled"))
        return None
    return await _advance(session, tag, mech.step(response.data))


async def _advance(session: Session, tag: str, step: Step) -> Action | None:
    match step:
        case Challenge(data=data):
            session.send(writer.continuation_data(data))
            return Action.SASL_CHALLENGE
        case Failed(reason=reason):
            session.sasl = None
            session.send(writer.bad(tag, f"malformed SASL response: {reason}"))
            return None
        case Done(credentials=creds):
            session.sasl = None
            if isinstance(creds, PasswordCredentials):
                await _password(session, tag, creds)
            elif isinstance(creds, ExternalCredentials):
                await _external(session, tag, creds)
            elif isinstance(creds, BearerToken):
                _failed(session, tag)
    return None


async def _password(session: Session, tag: str, creds: PasswordCredentials) -> None:
    try:
        identity = await session.service.auth.authenticate_password(
            creds.authcid, creds.password, _context(session), authzid=creds.authzid
        )
    except AuthFailure as failure:
        _failed(session, tag, failure)
        return
    _authenticated(session, tag, identity)


async def _external(session: Session, tag: str, creds: ExternalCredentials) -> None:
    try:
        chain = session.connection.peer_chain()
    except Exception as exc:  # ChainError & co: a bad certificate only means "not authenticated"
        log.info("EXTERNAL: client certificate refused: %s", exc)
        chain = None
    try:
        identity = await session.service.auth.authenticate_certificate(
            chain, creds.authzid, _context(session)
        )
    except AuthFailure as failure:
        _failed(session, tag, failure)
        return
    _authenticated(session, tag, identity)


def _failed(session: Session, tag: str, failure: AuthFailure | None = None) -> None:
    if failure is not None and failure.retry_after is not None:
        session.send(
            writer.no(tag, "too many failed attempts, try again later", writer.codes.UNAVAILABLE)
        )
        return
    session.send(writer.no(tag, "authentication failed", writer.codes.AUTHENTICATIONFAILED))


def _authenticated(session: Session, tag: str, identity: Identity) -> None:
    service = session.service
    key = identity.principal
    if service.per_identity[key] >= service.limits.max_per_identity:
        session.send(writer.no(tag, "too many connections for this identity", writer.codes.LIMIT))
        return
    service.per_identity[key] += 1
    session.counted_identity = key
    session.identity = identity
    session.state = State.AUTHENTICATED
    session.ok(tag, "authenticated", writer.codes.capability(capabilities(session)))


__all__ = ["PASSWORD_MECHANISMS", "authenticate", "login", "sasl_step", "starttls"]
