"""The Bulk Read export from PostgreSQL: `COPY (SELECT ...) TO STDOUT (FORMAT csv)`.

Formatting in Python costs about 2 s per 200 000 records of 20 fields; PostgreSQL writes the
CSV itself in a fraction of that, on another core while we compress. So every cell is
formatted in SQL, by the rules of bulk/cells.py, and the COPY bytes go straight into the zip.
The COPY output equals `cells.csv_line(cells.format_row(...))` byte for byte (tests check it);
what makes that work:

- Most cells are `data ->> 'Field'` and nothing else: the rules are built on that text.
- Empty cells are sent as NULL (`NULLIF(..., '')`): COPY quotes an empty string, not NULL.
- Date-times are formatted in the session time zone (`SET LOCAL TimeZone` to the org's), by
  `to_char(..., 'TZH:TZM')` from 1972-01-08 (since Africa/Monrovia's -00:44:30 ended that
  month every zone's offset is whole minutes) and with an explicit `+HH:MM:SS` offset before,
  as Python's `isoformat` prints it.
- JIT is off: compiling these long expressions took seconds and saved nothing.

The page (`LIMIT`, with `OFFSET` or after an id) is read in one REPEATABLE READ, read-only
transaction, so the file, its count and `more_records` come from one snapshot. COPY reports the
row count; the last row's id is read from the tail of the stream (`RowTail`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from crmwatch.bulk import cells
from crmwatch.bulk.csvzip import page_bounds, page_filter
from crmwatch.domain.modules import LOOKUP_TYPES, NAME

Write = Callable[[bytes], None]

WHOLE_MINUTES_FROM = datetime(1972, 1, 8, tzinfo=UTC)
"""From here on, every time zone's UTC offset is whole minutes (to_char's TZH:TZM is exact)."""
FOUR_DIGIT_YEARS_UNTIL = datetime(9999, 12, 30, tzinfo=UTC)
"""Before this, the local year stays below 10000 in every zone."""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def _offset(ts: str) -> str:
    """The UTC offset of `ts` in the session zone as `+HH:MM`, with `:SS` when it has seconds."""
    o = f"abs(extract(timezone FROM {ts})::int)"
    return (f"CASE WHEN extract(timezone FROM {ts}) < 0 THEN '-' ELSE '+' END"
            f" || lpad(({o} / 3600)::text, 2, '0') || ':' || lpad(({o} / 60 % 60)::text, 2, '0')"
            f" || CASE WHEN {o} % 60 <> 0 THEN ':' || lpad(({o} % 60)::text, 2, '0') ELSE '' END")


def _timestamp(ts: str, whole_minutes: str, fallback: str) -> str:
    """`ts` as `datetime.isoformat()` in the session zone; `fallback` outside years 1..9999."""
    return (f"CASE WHEN {whole_minutes} THEN to_char({ts}, 'YYYY-MM-DD\"T\"HH24:MI:SSTZH:TZM')"
            f" WHEN extract(year FROM {ts}) BETWEEN 1 AND 9999"
            f" THEN to_char({ts}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || {_offset(ts)}"
            f" ELSE {fallback} END")


def _ms_cell(column: str) -> str:
    ts = f"to_timestamp(floor({column} / 1000.0::float8))"
    whole = (f"{column} >= {_ms(WHOLE_MINUTES_FROM)} "
             f"AND {column} < {_ms(FOUR_DIGIT_YEARS_UNTIL)}")
    return _timestamp(ts, whole, "NULL")


def _local(t: str) -> str:
    """A stored UTC date-time `t` (text) in the session zone; as stored outside years 1..9999."""
    whole = (f"{t} >= '{WHOLE_MINUTES_FROM:%Y-%m-%d}' COLLATE \"C\" "
             f"AND {t} < '{FOUR_DIGIT_YEARS_UNTIL:%Y-%m-%d}' COLLATE \"C\"")
    return _timestamp(f"({t})::timestamptz", whole, t)


def _field(name: str, data_type: str) -> str:
    """SQL for the cell of a field of `data` (the rules are in bulk/cells.py)."""
    key = _literal(name)
    t = f"(p.data ->> {key})"
    if data_type in LOOKUP_TYPES:
        return f"COALESCE(p.data -> {key} ->> 'id', {t})"
    if data_type == "multiselectpicklist":
        j = f"(p.data -> {key})"
        return (f"CASE WHEN jsonb_typeof({j}) = 'array' THEN (SELECT string_agg("
                f"COALESCE(a.e #>> '{{}}', ''), ';' ORDER BY a.i)"
                f" FROM jsonb_array_elements({j}) WITH ORDINALITY AS a(e, i)) ELSE {t} END")
    if data_type == "datetime":
        return f"CASE WHEN {t} ~ '^{cells.STORED_DATETIME}$' THEN {_local(t)} ELSE {t} END"
    return t


def copy_query(spec: dict[str, Any]) -> tuple[str, str, list[Any]]:
    """The page's SELECT for COPY, the WHERE clause over `records r`, and their parameters."""
    columns: list[Sequence[str]] = [tuple(c) for c in spec["plan"]["columns"]]
    where, args = page_filter(spec, "postgres")
    page = (f"SELECT r.id, r.data, r.created_time, r.modified_time FROM records r"
            f" WHERE {where} {page_bounds(spec, int(spec['per_page']))}")
    select = ["p.id"]
    for name, data_type in columns:
        if name == "Created_Time":
            select.append(_ms_cell("p.created_time"))
        elif name == "Modified_Time":
            select.append(_ms_cell("p.modified_time"))
        else:
            select.append(f"NULLIF({_field(name, data_type)}, '')")
    query = f"SELECT {', '.join(select)} FROM ({page}) p ORDER BY p.id"
    return query, where, args


def _literal(name: str) -> str:
    if not NAME.fullmatch(name):  # letters, digits and _: safe in a string literal
        raise ValueError(f"invalid field name {name!r}")
    return f"'{name}'"


class RowTail:
    """The id of the last complete row of a COPY csv stream fed chunk by chunk.

    A newline ends a row when the quotes since the row began are even: inside a quoted field
    their count is odd. Only the unfinished row and one chunk are kept.
    """

    def __init__(self) -> None:
        self._buf = b""  # starts where a row starts
        self.last_id: int | None = None

    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk
        end = _row_end(buf, len(buf))
        if end < 0:
            self._buf = buf
            return
        start = _row_end(buf, end) + 1
        comma = buf.find(b",", start, end)
        self.last_id = int(buf[start:end if comma < 0 else comma])
        self._buf = buf[end + 1:]


def _row_end(buf: bytes, hi: int) -> int:
    """Where the last row-ending newline before `hi` is in `buf` (starting a row), or -1."""
    i = buf.rfind(b"\n", 0, hi)
    if i < 0:
        return -1
    quotes = buf.count(b'"', 0, i)
    while quotes % 2:
        j = buf.rfind(b"\n", 0, i)
        if j < 0:
            return -1
        quotes -= buf.count(b'"', j, i)
        i = j
    return i


async def _copy(spec: dict[str, Any], write: Write) -> tuple[int, bool, int | None]:
    import asyncpg

    query, where, args = copy_query(spec)
    per_page = int(spec["per_page"])
    tail = RowTail()

    async def output(chunk: bytes) -> None:
        tail.feed(chunk)
        write(chunk)

    conn = await asyncpg.connect(spec["database_url"])
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SELECT set_config('TimeZone', $1, true),"
                               " set_config('jit', 'off', true)", spec["plan"]["tz"])
            status = await conn.copy_from_query(query, *args, output=output, format="csv")
            count = int(status.split()[-1])
            if count and tail.last_id is None:
                raise RuntimeError(f"COPY sent {count} rows but no complete one")
            more = False
            if count == per_page and tail.last_id is not None:
                more = bool(await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM records r WHERE {where}"
                    f" AND r.id > ${len(args) + 1}::bigint)", *args, tail.last_id))
    finally:
        await conn.close()
    return count, more, tail.last_id if count else None


def copy_page(spec: dict[str, Any], write: Write) -> tuple[int, bool, int | None]:
    """Stream the page's CSV rows (no header) to `write`: their count, more_records, last id."""
    return asyncio.run(_copy(spec, write))
