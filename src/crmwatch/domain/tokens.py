"""OAuth credentials: Zoho-looking secrets, stored only as keyed hashes (HMAC-SHA256).

A keyed hash is as safe as a slow password hash for random 128-bit secrets and costs a
microsecond, so every API call can check its token without a cache miss hurting.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ACCESS_TOKEN_SECONDS = 3600
GRANT_CODE_SECONDS = 600
MAX_ACCESS_PER_REFRESH = 30
"""Zoho keeps at most 30 live access tokens per refresh token; the oldest go first."""


def new_secret(kind: str) -> str:
    """A fresh credential in Zoho's `1000.<hex>.<hex>` style (`kind` picks the shape)."""
    if kind == "client_id":
        return "1000." + secrets.token_hex(15).upper()
    if kind == "client_secret":
        return secrets.token_hex(21)
    return f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"


def digest(key: bytes, secret: str) -> str:
    """The stored form of a secret."""
    return hmac.new(key, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def same(key: bytes, secret: str, stored: str) -> bool:
    return hmac.compare_digest(digest(key, secret), stored)
