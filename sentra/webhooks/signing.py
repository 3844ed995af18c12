"""Standard Webhooks signing (standardwebhooks.com): secrets `whsec_` + base64, and the `v1,` HMAC-SHA256 signature
of `{webhook-id}.{webhook-timestamp}.{body}` under the secret's decoded bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64 random bytes


def new_secret() -> str:
    """A fresh webhook secret, shown to its owner once."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_message_id() -> str:
    """A message's webhook-id, the same for every attempt, so a receiver can drop a repeat."""
    return "msg_" + secrets.token_hex(12)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header of one attempt."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
