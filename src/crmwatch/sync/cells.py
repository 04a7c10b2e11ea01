"""Values between three shapes: a Bulk Read CSV cell, the records API's JSON, a mirror column.

A Bulk Read export formats some values differently from the records API (lookups as the
related id, multi-selects joined with `;`, numbers and booleans as text): `from_cells` turns
a CSV row back into the record the records API shows, so that a row from an export and the
same record read by id give the same `_record`. Pure: no I/O.

What a cell cannot say, and how it is handled:
- a lookup to a record (`lookup`) exports only the related id, while the API shows
  `{"name": ..., "id": ...}` with the name as it was when the lookup was set: such a row's
  `_record` is marked incomplete and the record is read by id (the only case that reads).
  Owner and user lookups take the user's name from the org's user list.
- an empty cell is JSON null: an empty text (`""`) or an empty multi-select (`[]`) stored at
  the source reads back as null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

USER_LOOKUPS = frozenset({"ownerlookup", "userlookup"})
RECORD_LOOKUPS = frozenset({"lookup"})
LOOKUPS = USER_LOOKUPS | RECORD_LOOKUPS
INTEGERS = frozenset({"integer", "bigint"})
DECIMALS = frozenset({"double", "currency", "percent", "decimal"})
SKIPPED = frozenset({"subform"})
"""Field types the records API leaves out of a record (and Bulk Read of a row)."""


@dataclass(frozen=True)
class FieldSpec:
    """A mirrored field: its API name and data type (from the field metadata)."""

    name: str
    data_type: str

    def to_json(self) -> list[str]:
        return [self.name, self.data_type]


def specs_from_metadata(fields: Sequence[Mapping[str, Any]]) -> list[FieldSpec]:
    """The mirrored fields of a module, in metadata order: every field the records API
    returns (`id` first; subforms are not part of a record)."""
    out = [FieldSpec("id", "bigint")]
    for f in fields:
        name, dtype = f.get("api_name"), f.get("data_type")
        if not isinstance(name, str) or not isinstance(dtype, str) or name == "id":
            continue
        if dtype in SKIPPED:
            continue
        out.append(FieldSpec(name, dtype))
    return out


def specs_from_json(doc: Sequence[Sequence[str]]) -> list[FieldSpec]:
    return [FieldSpec(str(n), str(t)) for n, t in doc]


# -- CSV cell -> records API -----------------------------------------------------------------

def _number(cell: str) -> int | float:
    if "." in cell or "e" in cell or "E" in cell:
        return float(cell)
    return int(cell)


@dataclass(frozen=True)
class User:
    """What a user lookup shows of a user: the name, and (for owners) the e-mail."""

    name: str
    email: str | None


def _user_value(data_type: str, user_id: str, user: User) -> dict[str, Any]:
    """An owner shows `{name, id, email}`, other user lookups `{name, id}` (records API)."""
    if data_type == "ownerlookup":
        return {"name": user.name, "id": user_id, "email": user.email}
    return {"name": user.name, "id": user_id}


def cell_value(spec: FieldSpec, cell: str, users: Mapping[str, User]) -> tuple[Any, bool]:
    """(the API's value, complete) for one cell; `complete` is False when the API shows more
    than the cell holds (a lookup to a record, a user the user list does not know)."""
    if cell == "":
        return None, True
    t = spec.data_type
    try:
        if t in INTEGERS or t in DECIMALS:
            return _number(cell), True
    except ValueError:
        return cell, True
    if t == "boolean":
        if cell in ("true", "false"):
            return cell == "true", True
        return cell, True
    if t == "multiselectpicklist":
        return cell.split(";"), True
    if t in USER_LOOKUPS:
        user = users.get(cell)
        if user is None:
            return {"name": None, "id": cell}, False
        return _user_value(t, cell, user), True
    if t in RECORD_LOOKUPS:
        return {"name": None, "id": cell}, False
    return cell, True


def from_cells(specs: Sequence[FieldSpec], header: Sequence[str], row: Sequence[str],
               users: Mapping[str, User]) -> tuple[dict[str, Any], bool]:
    """(record in the records API's shapes, complete) for one CSV row.

    `header` is the CSV's (`Id`, then field API names); a mirrored field the CSV lacks is
    null and makes the record incomplete.
    """
    cells = dict(zip(header, row, strict=False))
    record: dict[str, Any] = {}
    complete = True
    for spec in specs:
        if spec.name == "id":
            record["id"] = cells.get("Id", cells.get("id", ""))
            continue
        cell = cells.get(spec.name)
        if cell is None:
            record[spec.name] = None
            complete = False
            continue
        value, whole = cell_value(spec, cell, users)
        record[spec.name] = value
        complete = complete and whole
    return record, complete


def compiled(specs: Sequence[FieldSpec], header: Sequence[str]
             ) -> tuple[list[tuple[str, int, str]], bool]:
    """A plan for many rows of one CSV: (name, cell index or -1, data type) per field, and
    whether every field has a column."""
    index = {h: i for i, h in enumerate(header)}
    plan = []
    whole = True
    for spec in specs:
        key = "Id" if spec.name == "id" and "Id" in index else spec.name
        i = index.get(key, -1)
        whole = whole and i >= 0
        plan.append((spec.name, i, spec.data_type))
    return plan, whole


def _number_column(col: Sequence[str]) -> list[Any] | None:
    """A number column's cells as the API's numbers (as `_number`), None when a cell is no
    number (then the caller goes cell by cell)."""
    try:
        return [None if not c else (float(c) if "." in c or "e" in c or "E" in c else int(c))
                for c in col]
    except ValueError:
        return None


def convert_columns(plan: Sequence[tuple[str, int, str]], rows: Sequence[Sequence[str]],
                    users: Mapping[str, User]) -> tuple[list[list[Any]], list[bool]]:
    """The API's values of a batch of CSV rows, column by column (in `plan` order), and per
    row whether they are complete: text columns, nearly all, cost one list comprehension."""
    count = len(rows)
    if not count:
        return [[] for _ in plan], []
    width = max(i for _, i, _ in plan) + 1
    table = list(zip(*(r if len(r) >= width else [*r, *[""] * (width - len(r))]
                       for r in rows), strict=False))
    columns: list[list[Any]] = []
    incomplete = [False] * count
    for name, i, t in plan:
        if i < 0:
            columns.append([None] * count)
            incomplete = [True] * count
            continue
        col = table[i]
        values: list[Any] | None = None
        if t in _TEXTUAL:
            values = [c or None for c in col]
        elif t in USER_LOOKUPS:
            known = {uid: _user_value(t, uid, user) for uid, user in users.items()}
            values = [known.get(c) if c else None for c in col]
            for k, (c, v) in enumerate(zip(col, values, strict=True)):
                if c and v is None:
                    values[k] = {"name": None, "id": c}
                    incomplete[k] = True
        elif t in INTEGERS or t in DECIMALS:
            values = _number_column(col)
        elif t == "boolean" and set(col) <= {"", "true", "false"}:
            values = [None if not c else c == "true" for c in col]
        elif t == "multiselectpicklist":
            values = [c.split(";") if c else None for c in col]
        if values is None:
            spec = FieldSpec(name, t)
            converted = [cell_value(spec, c, users) if c else (None, True) for c in col]
            values = [v for v, _ in converted]
            for k, (_, whole) in enumerate(converted):
                if not whole:
                    incomplete[k] = True
        columns.append(values)
    return columns, [not bad for bad in incomplete]


def convert_rows(plan: Sequence[tuple[str, int, str]], rows: Sequence[Sequence[str]],
                 users: Mapping[str, User]) -> list[tuple[dict[str, Any], bool]]:
    """`from_cells` for a batch of rows with a `compiled` plan (see `convert_columns`)."""
    columns, complete = convert_columns(plan, rows, users)
    names = [n for n, _, _ in plan]
    return [(dict(zip(names, values, strict=True)), whole)
            for values, whole in zip(zip(*columns, strict=True), complete, strict=True)]


@dataclass
class Batch:
    """Rows ready for the mirror: records in the API's shapes (None: read back from the
    texts when asked for), whether each is complete, the column values (in specs order) and
    the `_record` texts."""

    records: list[dict[str, Any]] | None
    complete: list[bool]
    columns: list[list[Any]]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def record(self, k: int) -> dict[str, Any]:
        """The k-th record in the API's shapes."""
        if self.records is not None:
            return self.records[k]
        loaded: dict[str, Any] = orjson.loads(self.texts[k])
        return loaded

    @property
    def ids(self) -> list[str]:
        return [str(v) for v in self.columns[0]] if self.columns else []


def snapshot_batch(specs: Sequence[FieldSpec], plan: Sequence[tuple[str, int, str]],
                   rows: Sequence[Sequence[str]], users: Mapping[str, User]) -> Batch:
    """A batch of CSV rows converted once for everything the mirror needs (`plan` from
    `plan_for(specs, header)`, so that its fields are the specs')."""
    columns, complete = convert_columns(plan, rows, users)
    names = [n for n, _, _ in plan]
    records = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    sql = [column_values(spec.data_type, col) if spec.name != "id" else list(col)
           for spec, col in zip(specs, columns, strict=True)]
    dumps = orjson.dumps
    return Batch(records, complete, sql, [dumps(r).decode() for r in records])


def batch_of(specs: Sequence[FieldSpec], rows: Sequence[tuple[dict[str, Any], bool]]) -> Batch:
    """A Batch of records given as (record, complete) pairs."""
    records = [r for r, _ in rows]
    names = frozenset(s.name for s in specs)
    columns = [list(c) for c in zip(*rows_values(specs, records), strict=True)] if records \
        else [[] for _ in specs]
    return Batch(records, [c for _, c in rows], columns,
                 [record_json(specs, r, names) for r in records])


_TEXTUAL = frozenset({"text", "textarea", "email", "phone", "website", "autonumber",
                      "picklist", "date", "datetime", "bigint_text"})
"""Types whose cell is the API's string as is (`id` is a bigint but a string in the API)."""


def _id_plan(plan: Sequence[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [(n, i, "bigint_text" if n == "id" else t) for n, i, t in plan]


def plan_for(specs: Sequence[FieldSpec], header: Sequence[str]
             ) -> tuple[list[tuple[str, int, str]], bool]:
    """`compiled`, with the record id kept as the API's string."""
    plan, whole = compiled(specs, header)
    return _id_plan(plan), whole


# -- records API -> mirror columns -----------------------------------------------------------

def column_type(data_type: str, dialect: str) -> str:
    """The SQL type of a field's column."""
    if data_type in INTEGERS:
        return "INTEGER" if dialect == "sqlite" else "BIGINT"
    if data_type in DECIMALS:
        return "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    if data_type == "boolean":
        return "INTEGER" if dialect == "sqlite" else "BOOLEAN"
    return "TEXT"


def column_value(data_type: str, value: Any) -> Any:
    """A record's value as its column holds it: lookups as the related id, structured values
    as JSON text, numbers and booleans as themselves (another shape than the type expects:
    NULL in the column; `_record` keeps it)."""
    if value is None:
        return None
    if data_type in LOOKUPS:
        if isinstance(value, dict):
            rid = value.get("id")
            return None if rid is None else str(rid)
        return str(value)
    if data_type in INTEGERS:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if data_type in DECIMALS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None
    if data_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def row_values(specs: Sequence[FieldSpec], record: Mapping[str, Any]) -> list[Any]:
    """The column values of a record, in `specs` order (`id` as text first)."""
    out: list[Any] = []
    for spec in specs:
        value = record.get(spec.name)
        if spec.name == "id":
            out.append(str(value))
        else:
            out.append(column_value(spec.data_type, value))
    return out


_NONE = type(None)
_PLAIN_KINDS: dict[str, set[Any]] = {
    "text": {str, _NONE}, "integer": {int, _NONE}, "double": {float, _NONE},
    "boolean": {bool, _NONE},
}


def _plain_kinds(data_type: str) -> set[Any]:
    if data_type in INTEGERS:
        return _PLAIN_KINDS["integer"]
    if data_type in DECIMALS:
        return _PLAIN_KINDS["double"]
    if data_type == "boolean":
        return _PLAIN_KINDS["boolean"]
    if data_type in LOOKUPS:
        return set()
    return _PLAIN_KINDS["text"]


def column_values(data_type: str, values: list[Any]) -> list[Any]:
    """`column_value` of a column: values that already are what the column holds (strings,
    ints, floats, booleans, nulls) are taken as they are."""
    kinds = set(map(type, values))
    if kinds <= _plain_kinds(data_type):
        return values
    if data_type in LOOKUPS and kinds <= {dict, _NONE}:
        return [None if v is None else (None if v.get("id") is None else str(v["id"]))
                for v in values]
    return [column_value(data_type, v) for v in values]


def rows_values(specs: Sequence[FieldSpec], records: Sequence[Mapping[str, Any]]
                ) -> list[tuple[Any, ...]]:
    """`row_values` of many records, column by column (see `column_values`)."""
    columns: list[list[Any]] = []
    for spec in specs:
        values = [r.get(spec.name) for r in records]
        if spec.name == "id":
            columns.append([str(v) for v in values])
        else:
            columns.append(column_values(spec.data_type, values))
    return list(zip(*columns, strict=True))


def record_json(specs: Sequence[FieldSpec], record: Mapping[str, Any],
                names: frozenset[str] | None = None) -> str:
    """`_record`: the record with every mirrored field present (null when absent).
    `names` (the specs' names, when the caller has them) skips the copy for a record that
    has exactly those keys."""
    if names is not None and len(record) == len(names) and record.keys() == names:
        return orjson.dumps(record).decode()
    full = {s.name: record.get(s.name) for s in specs}
    for key, value in record.items():
        full.setdefault(key, value)
    return orjson.dumps(full).decode()
