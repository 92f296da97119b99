"""SMTP edges: inbound from other operators (port 25), submission, relay.

``listeners.LISTENERS`` maps listener names to their factories (see
``mssgw.app``); ``session.EsmtpSession`` is the ESMTP dialogue they share.
"""
