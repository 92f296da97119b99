"""IMAP command handlers, one module per family, and the dispatch table.

``HANDLERS`` maps a command class to its handler and the session states in
which it is allowed (RFC 3501 §6: any state, not authenticated,
authenticated, selected).
"""

from __future__ import annotations

from mssgw.imap.commands import append as append
from mssgw.imap.commands import auth as auth
from mssgw.imap.commands import fetch as fetch
from mssgw.imap.commands import folders as folders
from mssgw.imap.commands import idle as idle
from mssgw.imap.commands import misc as misc
from mssgw.imap.commands import search as search
from mssgw.imap.commands import select as select
from mssgw.imap.commands import store as store
from mssgw.imap.protocol import commands as c
from mssgw.imap.session import Handler, State

ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})

HANDLERS: dict[type[c.Command], tuple[Handler, frozenset[State]]] = {
    c.Capability: (misc.capability, ANY),
    c.Noop: (misc.noop, ANY),
    c.Logout: (misc.logout, ANY),
    c.Id: (misc.id_, ANY),
    c.StartTLS: (auth.starttls, NOT_AUTH),
    c.Login: (auth.login, NOT_AUTH),
    c.Authenticate: (auth.authenticate, NOT_AUTH),
    c.Enable: (misc.enable, AUTH),
    c.Namespace: (folders.namespace, AUTH),
    c.Create: (folders.create, AUTH),
    c.Delete: (folders.delete, AUTH),
    c.Rename: (folders.rename, AUTH),
    c.Subscribe: (folders.subscribe, AUTH),
    c.Unsubscribe: (folders.unsubscribe, AUTH),
    c.List: (folders.list_, AUTH),
    c.Lsub: (folders.lsub, AUTH),
    c.Status: (folders.status, AUTH),
    c.Select: (select.select, AUTH),
    c.Examine: (select.select, AUTH),
    c.Append: (append.append, AUTH),
    c.Idle: (idle.idle, AUTH),
    c.Check: (select.check, SELECTED),
    c.Close: (select.close, SELECTED),
    c.Unselect: (select.unselect, SELECTED),
    c.Expunge: (store.expunge, SELECTED),
    c.Search: (search.search, SELECTED),
    c.Fetch: (fetch.fetch, SELECTED),
    c.Store: (store.store, SELECTED),
    c.Copy: (store.copy, SELECTED),
    c.Move: (store.move, SELECTED),
}

__all__ = ["HANDLERS"]
