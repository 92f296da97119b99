"""TLS helpers: profiles, contexts, CRLs, identities, hot reload, dev PKI.

Public entry points (see docs/trust.md):

* ``mssgw.tls.context``: ``server_context``, ``client_context``,
  ``peer_chain``, ``verified_peer``, ``load_certificates``;
* ``mssgw.tls.reload``: ``ReloadingContext`` (``current``,
  ``listener_context``, ``reload``, ``maybe_reload``, ``watch``);
* ``mssgw.tls.chain``: ``validate`` (path + revocation at an instant);
* ``mssgw.tls.crl``: ``CrlSet``, ``revocation_status``;
* ``mssgw.tls.identity``: ``normalise_dn``, ``subject_dn``, ``national_id``,
  ``structure_id``;
* ``mssgw.tls.devpki``: ``init_dev``.

Submodules are imported where used: this package stays cheap to import.
"""
