"""Secrets out of log lines: credential parameters (`client_secret=...` in a token URL's query
string), `Authorization` values, passwords in URLs, and anything shaped like a crmwatch
credential."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MARK = "[redacted]"

SECRET_PARAMS = frozenset({"client_secret", "refresh_token", "access_token", "code", "token",
                           "id_token", "password"})
"""Parameter names whose values are credentials (compared decoded, ignoring case)."""

_PAIR = re.compile(r"(?P<pre>^|[?&\s'\"(])(?P<key>[^\s'\"&?=]+)=(?P<value>[^\s'\"&]*)")
_AUTHORIZATION = re.compile(
    r"(?i)(?P<pre>authorization['\"]?\s*[:=,]\s*(?:b?['\"])?\s*"
    r"(?:(?:zoho-oauthtoken|bearer|basic|token)\s+)?)(?P<value>[^\s'\",)\]}]+)")
_URL_PASSWORD = re.compile(r"(?P<pre>://[^\s:/@]*:)(?P<value>[^\s/@]+)@")
"""`scheme://user:password@host` (database URLs)."""
_SHAPES = re.compile(r"\b1000\.[0-9a-f]{32}\.[0-9a-f]{32}\b|\b[0-9a-f]{42}\b")
"""Refresh and access tokens and grant codes (`1000.<hex>.<hex>`); client secrets (42 hex)."""


def redact(text: str) -> str:
    """`text` with every credential it shows replaced by MARK."""
    if "=" in text:
        text = _PAIR.sub(_pair, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m["pre"] + MARK + "@", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTHORIZATION.sub(lambda m: m["pre"] + MARK, text)
    return _SHAPES.sub(MARK, text)


def _pair(match: re.Match[str]) -> str:
    if unquote_plus(match["key"]).strip().lower() in SECRET_PARAMS and match["value"]:
        return f"{match['pre']}{match['key']}={MARK}"
    return match[0]
