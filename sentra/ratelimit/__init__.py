"""Ingest rate limits: the interface and a bucket in this process (local.py), one shared in Redis
(redis_limit.py), and the choice between them (open.py)."""
