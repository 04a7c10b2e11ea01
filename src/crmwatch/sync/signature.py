"""Verifying Standard Webhooks signatures (https://www.standardwebhooks.com), receiver side.

A request carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`:
space-separated `v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` entries. The
key is the base64 after `whsec_` in the secret. Written from the scheme, not shared with the
server, so that the sync depends on nothing but the wire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

TOLERANCE_S = 300.0
"""How far a signature's timestamp may be from the receiver's clock (replay window)."""


def key_of(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional); ValueError if bad."""
    text = secret.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a signing secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("the signing secret is empty")
    return key


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now_s: float,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """Whether one of the request's v1 signatures is `key`'s over this body, dated within
    `tolerance_s` of `now_s`. Missing or malformed headers: False."""
    msg_id = headers.get("webhook-id")
    stamp = (headers.get("webhook-timestamp") or "").strip()
    given = headers.get("webhook-signature")
    if not msg_id or not given or not (stamp.isascii() and stamp.isdigit()):
        return False
    if abs(now_s - int(stamp)) > tolerance_s:
        return False
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for entry in given.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            mac = base64.b64decode(value, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(expected, mac):
            return True
    return False
