"""The canonical form of a record and the digests built on it (docs/digest.md).

Pure and self-contained (no imports from the rest of crmwatch): the server's digest endpoint
and `crmwatch sync verify` both hash with these functions, and docs/digest.md describes the
same bytes for anyone computing them elsewhere.

- `canonical(record, fields)`: the record's id and the given fields as compact JSON with
  sorted keys (UTF-8); a lookup, owner or user object is reduced to its id; numbers are
  written in one fixed way whatever their type in the reading language.
- `record_hash(record, fields)`: SHA-256 of those bytes.
- `BucketHasher`: a bucket's count and hash, SHA-256 over the record hashes in ascending
  numeric id order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

ALGORITHM = "crmwatch-digest-1"
"""Named in every digest answer; a change to the canonical form gets a new name."""

EMPTY_HASH = hashlib.sha256(b"").hexdigest()
"""The hash of a bucket without records."""

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


def id_key(record_id: str) -> tuple[int, str]:
    """Sort key giving numeric order for ids written without leading zeros."""
    return (len(record_id), record_id)


def is_id(text: str) -> bool:
    """A record id as the API writes it: ASCII decimal digits, no leading zero."""
    return text.isascii() and text.isdigit() and 0 < len(text) <= 19 and text[0] != "0"


def number_text(value: int | float) -> str:
    """A JSON number in canonical form.

    A number with an integral value (an int, or a float such as 5.0 or 1e16) is written
    exactly as decimal digits, without exponent or fraction. Any other number is written as
    ECMAScript's `Number.prototype.toString` (and so RFC 8785) writes it: the shortest digits
    that read back as the same binary64 value, plain between 1e-6 and 1e21, with an exponent
    (`1.5e-7`) outside.
    """
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or infinity")
    if value.is_integer():
        return str(int(value))
    if value < 0:
        return "-" + number_text(-value)
    # the shortest round-trip digits (repr), as value = 0.<digits> * 10**n
    _sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    n = len(digits) + int(exponent)
    digits = stripped
    k = len(digits)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:] if k > n else digits + "0" * (n - k)
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits[0] if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(e)}"


def _id_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _plain(value)


def _plain(value: Any) -> Any:
    """A JSON value ready for orjson: numbers as canonical fragments, objects recursed."""
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is int:
        return value if _I64_MIN <= value <= _U64_MAX else orjson.Fragment(str(value))
    if t is float:
        return orjson.Fragment(_float_text(value))
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"object keys must be strings, not {k!r}")
            out[k] = _plain(v)
        return out
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):  # a str subclass
        return str(value)
    if isinstance(value, int | float):
        return _plain(int(value) if isinstance(value, int) else float(value))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _field_value(value: Any) -> Any:
    """A field's value: lookups (objects with an id), also inside a list, become the id."""
    t = type(value)  # exact types first: this runs for every field of every record
    if t is str or value is None or t is bool:
        return value
    if t is dict:
        return _id_text(value["id"]) if "id" in value else _plain(value)
    if t is float:
        return orjson.Fragment(_float_text(value))
    if t is int:
        return value if _I64_MIN <= value <= _U64_MAX else orjson.Fragment(str(value))
    if isinstance(value, Mapping):
        return _id_text(value["id"]) if "id" in value else _plain(value)
    if isinstance(value, list | tuple):
        return [_id_text(v["id"]) if isinstance(v, Mapping) and "id" in v else _plain(v)
                for v in value]
    return _plain(value)


def _float_text(value: float) -> str:
    if math.isfinite(value) and not value.is_integer():
        text = repr(value)
        # Python's repr has ECMAScript's digits; without an exponent it is the same text
        if "e" not in text:
            return text
    return number_text(value)


_NATIVE = frozenset({str, type(None), bool, int})
"""Types orjson writes in canonical form already (ints: within 64 bits, else it refuses)."""


def canonical(record: Mapping[str, Any], fields: Iterable[str]) -> bytes:
    """The canonical bytes of `record`'s id and `fields` (a missing field counts as null)."""
    get = record.get
    obj = {name: get(name) for name in fields}
    for name in [n for n, v in obj.items() if type(v) not in _NATIVE]:
        obj[name] = _field_value(obj[name])
    obj["id"] = _id_text(record["id"])
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return orjson.dumps({k: _plain(v) if type(v) is int else v for k, v in obj.items()},
                            option=orjson.OPT_SORT_KEYS)


def record_hash(record: Mapping[str, Any], fields: Iterable[str]) -> bytes:
    """SHA-256 (32 bytes) of the canonical form."""
    return hashlib.sha256(canonical(record, fields)).digest()


def normalize_fields(fields: Iterable[str]) -> list[str]:
    """The field list as a digest answer names it: sorted, unique, without `id`."""
    return sorted({f for f in fields if f != "id"})


class BucketHasher:
    """Count and hash of one bucket, fed records in ascending numeric id order."""

    __slots__ = ("_h", "count", "fields", "first_id", "last_id")

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(normalize_fields(fields))
        self._h = hashlib.sha256()
        self.count = 0
        self.first_id: str | None = None
        self.last_id: str | None = None

    def add(self, record_id: str, record: Mapping[str, Any]) -> bytes:
        """Add a record (its `id` must be `record_id`); returns its record hash."""
        if str(record.get("id")) != record_id:
            raise ValueError(f"record id {record.get('id')!r} is not {record_id!r}")
        digest = record_hash(record, self.fields)
        self.add_hash(record_id, digest)
        return digest

    def add_hash(self, record_id: str, digest: bytes) -> None:
        """Add a record by its record hash, computed already."""
        if self.last_id is not None and id_key(record_id) <= id_key(self.last_id):
            raise ValueError(f"id {record_id} does not follow {self.last_id}")
        if len(digest) != 32:
            raise ValueError("a record hash has 32 bytes")
        self._h.update(digest)
        self.count += 1
        if self.first_id is None:
            self.first_id = record_id
        self.last_id = record_id

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def split_counts(total: int, buckets: int) -> list[int]:
    """Record counts of at most `buckets` buckets over `total` records, nearly equal.

    The first `total % n` buckets hold one record more; no bucket is empty.
    """
    if total < 0 or buckets < 1:
        raise ValueError("total must be >= 0 and buckets >= 1")
    n = min(total, buckets)
    if n == 0:
        return []
    size, rest = divmod(total, n)
    return [size + 1] * rest + [size] * (n - rest)
