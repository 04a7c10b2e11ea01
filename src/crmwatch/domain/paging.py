"""Record-list paging rules: Zoho's page limits and opaque page tokens. Pure."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson

from crmwatch.domain.errors import ZohoError

TOKEN_SECONDS = 24 * 3600


class PaginationLimit(ZohoError):
    """pagination limit exceeded"""

    code = "PAGINATION_LIMIT_EXCEEDED"


class TokenMismatch(ZohoError):
    """the page token is bound to other parameters"""

    code = "TOKEN_BOUND_DATA_MISMATCH"


class ExpiredValue(ZohoError):
    """the page token has expired"""

    code = "EXPIRED_VALUE"


class InvalidToken(ZohoError):
    """the page token is invalid"""

    code = "INVALID_DATA"


@dataclass(frozen=True, slots=True)
class Cursor:
    offset: int
    binding: str
    expires_ms: int


def binding(*parts: object) -> str:
    """A short digest of the parameters a token is bound to."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def encode(cursor: Cursor) -> str:
    raw = orjson.dumps({"o": cursor.offset, "b": cursor.binding, "e": cursor.expires_ms})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, expected_binding: str, now_ms: int, limit: int) -> Cursor:
    """The cursor in a token; raises Zoho's errors for a bad, foreign or expired one, and
    PAGINATION_LIMIT_EXCEEDED for one that reaches `limit` records or more (0: no limit)."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = Cursor(int(raw["o"]), str(raw["b"]), int(raw["e"]))
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise InvalidToken(param_name="page_token") from None
    if cursor.offset < 0:
        raise InvalidToken(param_name="page_token")
    if cursor.binding != expected_binding:
        raise TokenMismatch(param_name="page_token")
    if cursor.expires_ms <= now_ms:
        raise ExpiredValue(param_name="page_token")
    if limit and cursor.offset >= limit:
        raise PaginationLimit(limit=limit)
    return cursor
