"""The trust space: liste blanche (parse, verify, index, refresh) and peer
binding (SPEC TRUST-1…6).

* ``mssgw.trust.listeblanche``: ``load_verified``, ``ListeBlanche``,
  ``ListeBlancheError``, ``sign_liste_blanche``, ``Entry``;
* ``mssgw.trust.refresh``: ``ListeBlancheStore`` (last good copy on disk),
  ``fetch_once``, ``Refresher`` (periodic task);
* ``mssgw.trust.binding``: ``check_peer`` → ``Decision``.
"""
