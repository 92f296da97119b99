"""IMAP edge of the gateway.

``protocol/`` is the sans-IO core (command reader/parser and response
writer, no sockets); ``mime`` computes ENVELOPE/BODYSTRUCTURE and extracts
``BODY[section]`` from raw message bytes.  Sessions, commands and the asyncio
server are built on top of these modules.
"""
