"""Sentra's HTTP/1.1 server (protocol.py reads requests, exchange.py writes answers, parsing.py reads heads) and what
every answer shares (access_log.py)."""
