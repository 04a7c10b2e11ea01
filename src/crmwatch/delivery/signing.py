"""Standard Webhooks signatures (https://www.standardwebhooks.com).

A secret is `whsec_` + base64 of random bytes. Each request carries `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature`: space-separated `v1,<base64 of
HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, one per secret, so a receiver keeps verifying
while a channel's secret is rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Mapping, Sequence

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh random secret, `whsec_` + base64 of 32 bytes."""
    return PREFIX + base64.b64encode(_random.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a secret (the `whsec_` prefix is optional); ValueError if bad."""
    text = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def _mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secrets: Sequence[str], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space-separated."""
    if not secrets:
        raise ValueError("need at least one secret")
    return " ".join(
        "v1," + base64.b64encode(_mac(secret_key(s), msg_id, str(timestamp_s), body)).decode()
        for s in secrets
    )


def headers(secrets: Sequence[str], msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one request."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": sign(secrets, msg_id, timestamp_s, body),
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now_s: float, tolerance_s: float = 300
) -> bool:
    """Whether `headers` carry a valid v1 signature of `body` by `secret`, dated within
    `tolerance_s` of `now_s`. Missing or malformed headers give False; a bad secret raises.
    """
    key = secret_key(secret)
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp", "").strip()
    signatures = lower.get("webhook-signature")
    if not msg_id or not signatures or not (stamp.isascii() and stamp.isdigit()):
        return False
    if abs(now_s - int(stamp)) > tolerance_s:
        return False
    expected = _mac(key, msg_id, stamp, body)  # the header's text as sent, not re-formatted
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(expected, given):
            return True
    return False
