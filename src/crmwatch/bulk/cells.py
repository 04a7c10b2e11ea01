"""How a stored value shows in a Bulk Read CSV: the rules, and their Python implementation.

There are two exporters (bulk/csvzip.py): SQLite's formats in Python (`format_batch`), while
PostgreSQL's formats in SQL and streams `COPY ... (FORMAT csv)` (bulk/pgexport.py). Both must
write the same bytes for the same records; `format_row` and `csv_line`, value by value, are
the reference both are tested against.

The text of a JSON value, as PostgreSQL's `->>` gives it: a string as is; a boolean `true` or
`false`; a number in positional notation with the decimal digits stored (`3059.0`, `0.00001`,
`10000000000000000`; orjson writes a double's shortest round-trip digits, and `numeric` never
prints an exponent; no negative zero); null empty; an object or array as JSON in jsonb's
canonical form (keys by length then bytes, `", "` and `": "` separators).

A cell, for a value `v` of a field of type `t` (missing means null, which is always empty):
- lookups (`lookup`, `ownerlookup`, `userlookup`): an object's `id`, as text (Zoho exports the
  related record's id); a value of any other shape, as text.
- `multiselectpicklist`: an array's elements as text, joined with `;`.
- `datetime`: a stored UTC date-time (`YYYY-MM-DDTHH:MM:SS+00:00`, how the API stores them)
  in the org's time zone with its offset, as the API shows it (`2026-11-23T04:00:00-08:00`);
  kept as stored when its local year would fall outside 1..9999. A value of that pattern
  that is no date (`2026-02-30T...`, which the API cannot store) fails the export, on both
  backends alike.
- `Created_Time` / `Modified_Time`: from the record's millisecond columns, as
  `clock.format_ms` shows them (an instant outside years 1..9999: empty).
- anything else, and values of another shape than the field type expects (left by a change
  of the field's type): as text.

Why "as text" rather than a rule per type: text, picklist, date, boolean and number fields,
nearly every column, then cost PostgreSQL one `->>` each, with no type test; and the text of
every JSON shape can be written identically by both backends. Numbers never show an
exponent: a 1e-05 shows as `0.00001`, and a double orjson stored as `1e+16` (the API stores at
most 16 digits: only 1e16 itself) as `10000000000000000`, with no `.0`.

CSV dialect, PostgreSQL COPY's: fields separated by `,`, every row ended by `\\n` (not RFC
4180's CRLF, which COPY cannot write; CSV readers take both); a field is quoted (`"`, inner
quotes doubled) when it holds `,`, `"`, CR or LF; an empty field is never quoted. The header
is `Id` and then the field API names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from crmwatch.domain import clock
from crmwatch.domain.modules import LOOKUP_TYPES

TIME_COLUMNS = frozenset({"Created_Time", "Modified_Time"})
"""Columns taken from the records table's millisecond columns, not from `data`."""
STORED_DATETIME = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+]00:00"
"""A date-time as the API stores it (`clock.utc_text`); the SQL exporter uses it too."""

_STORED_DATETIME = re.compile(STORED_DATETIME)
_SPECIAL = re.compile(r'[,"\r\n]')
_NONE = type(None)
_BOOL_TEXT = {True: "true", False: "false", None: ""}
_JSON_ESCAPES = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                 '"': '\\"', "\\": "\\\\"}
_JSON_ESCAPE = re.compile(r'[\x00-\x1f"\\]')


def number_text(value: int | float) -> str:
    """A JSON number as PostgreSQL's numeric prints it: positional, the digits stored."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0.0"  # numeric has no negative zero
    digits = repr(value)  # the shortest round-trip digits, which orjson stored too
    return format(Decimal(digits), "f") if "e" in digits else digits


def _json_string(value: str) -> str:
    return '"' + _JSON_ESCAPE.sub(
        lambda m: _JSON_ESCAPES.get(m[0]) or f"\\u{ord(m[0]):04x}", value) + '"'


def jsonb_text(value: Any) -> str:
    """A JSON value as PostgreSQL's jsonb prints it (object keys by length, then bytes)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{_json_string(k)}: {jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(jsonb_text, value)) + "]"
    if isinstance(value, str):
        return _json_string(value)
    if value is None:
        return "null"
    return text(value)


def text(value: Any) -> str:
    """The text of a JSON value, as PostgreSQL's `->>` gives it (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    if value is None:
        return ""
    return jsonb_text(value)


def local_datetime(stored: str, tz: ZoneInfo) -> str:
    """A stored UTC date-time in the org's zone; as stored when the local year is not 1..9999."""
    try:
        return clock.local_text(stored, tz)
    except OverflowError:
        return stored


def format_value(data_type: str, value: Any, tz: ZoneInfo) -> str:
    """A stored value as its CSV cell (unquoted), by the rules of the module docstring."""
    if data_type in LOOKUP_TYPES:
        if isinstance(value, dict) and value.get("id") is not None:
            return text(value["id"])
    elif data_type == "multiselectpicklist":
        if isinstance(value, list):
            return ";".join(map(text, value))
    elif data_type == "datetime" and isinstance(value, str) \
            and _STORED_DATETIME.fullmatch(value):
        return local_datetime(value, tz)
    return text(value)


def format_ms(epoch_ms: int, tz: ZoneInfo) -> str:
    """Created_Time / Modified_Time: `clock.format_ms`, empty outside years 1..9999."""
    try:
        return clock.format_ms(epoch_ms, tz)
    except (OverflowError, ValueError, OSError):
        return ""


def quote(cell: str) -> str:
    """A cell as a CSV field (see the dialect in the module docstring)."""
    if _SPECIAL.search(cell) is None:
        return cell
    return '"' + cell.replace('"', '""') + '"'


def header(columns: Sequence[Sequence[str]]) -> bytes:
    """The header row (API names need no quoting)."""
    return ",".join(["Id", *(c[0] for c in columns)]).encode() + b"\n"


def format_row(columns: Sequence[Sequence[str]], record_id: int, data: dict[str, Any],
               created_ms: int, modified_ms: int, tz: ZoneInfo) -> list[str]:
    """One record's cells, value by value: the reference the fast exporters are tested against."""
    out = [str(record_id)]
    for name, data_type in columns:
        if name == "Created_Time":
            out.append(format_ms(created_ms, tz))
        elif name == "Modified_Time":
            out.append(format_ms(modified_ms, tz))
        else:
            out.append(format_value(data_type, data.get(name), tz))
    return out


def csv_line(cells: Sequence[str]) -> str:
    """One CSV row of cells, with its line end."""
    return ",".join(map(quote, cells)) + "\n"


# -- the fast path: a batch of rows at a time, column by column ---------------------------

def _cells(data_type: str, values: list[Any], tz: ZoneInfo) -> list[str]:
    """One column's cells for a batch; the common shapes without a Python call per value."""
    kinds = set(map(type, values))
    plain = data_type not in LOOKUP_TYPES and data_type not in ("datetime", "multiselectpicklist")
    if plain or kinds <= {_NONE}:
        if kinds <= {str, _NONE}:
            return ["" if v is None else v for v in values] if _NONE in kinds else values
        if kinds <= {bool, _NONE}:
            return list(map(_BOOL_TEXT.__getitem__, values))
        if kinds <= {int, _NONE}:
            return ["" if v is None else str(v) for v in values]
        if kinds <= {float, _NONE}:
            texts = ["" if v is None else repr(v) for v in values]
            if "e" not in "".join(texts) and "-0.0" not in texts:
                return texts
    elif data_type in LOOKUP_TYPES and kinds <= {dict, _NONE}:
        ids = ["" if v is None else v.get("id") for v in values]
        if set(map(type, ids)) <= {str}:
            return ids
    return [format_value(data_type, v, tz) for v in values]


def _quoted(cells: list[str]) -> list[str]:
    """The column's cells as CSV fields (`quote`, without a call per cell)."""
    joined = "".join(cells)
    if "," not in joined and '"' not in joined and "\n" not in joined and "\r" not in joined:
        return cells
    return ['"' + c.replace('"', '""') + '"'
            if "," in c or '"' in c or "\n" in c or "\r" in c else c for c in cells]


def data_columns(columns: Sequence[Sequence[str]]) -> list[str]:
    """The columns whose values come from `data` (all but TIME_COLUMNS), in order."""
    return [c[0] for c in columns if c[0] not in TIME_COLUMNS]


def format_batch(columns: Sequence[Sequence[str]], rows: Sequence[Sequence[Any]],
                 tz: ZoneInfo) -> str:
    """CSV rows for records read as (id, values, created ms, modified ms).

    `values` is a JSON array of the record's values of `data_columns(columns)`, in order
    (SQLite's multi-path `json_extract` builds it: less to parse than all of `data`).
    """
    if not rows:
        return ""
    values = list(map(orjson.loads, map(itemgetter(1), rows)))
    table: list[list[str]] = [list(map(str, map(itemgetter(0), rows)))]
    position = 0
    for name, data_type in columns:
        if name in TIME_COLUMNS:
            ms = map(itemgetter(2 if name == "Created_Time" else 3), rows)
            table.append([format_ms(m, tz) for m in ms])
            continue
        column = list(map(itemgetter(position), values))
        table.append(_quoted(_cells(data_type, column, tz)))
        position += 1
    return "\n".join(map(",".join, zip(*table, strict=True))) + "\n"
