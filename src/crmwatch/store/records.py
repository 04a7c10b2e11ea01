"""Flows for records: batch writes with their journal events, lists, search, deletions.

Every write flow runs in one transaction (see `Store.write`): the record rows and the journal
events commit together or not at all. Per-record problems are values in the result list;
an exception aborts the whole request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from crmwatch.domain import clock
from crmwatch.domain import records as rec
from crmwatch.domain.errors import DuplicateData, InvalidData, ZohoError
from crmwatch.domain.modules import NAME, Module
from crmwatch.store.base import Dynamic, Emit, Flow, NextIds, Query, Savepoint
from crmwatch.store.tenants import Org, User

APPROVED = {"$approval_state": "approved"}


@dataclass(frozen=True, slots=True)
class Ctx:
    """Who acts, in which org, at what time."""

    org: Org
    user: User
    users: Mapping[int, User]
    modules: Mapping[str, Module]
    now_ms: int
    batch: int = 0
    """Shared by every journal event of one API call (see `new_batch`)."""

    @property
    def tz(self) -> ZoneInfo:
        return clock.zone(self.org.timezone)


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    data: dict[str, Any]
    created_time: int
    modified_time: int
    name: str | None
    parent_id: int | None

    @classmethod
    def from_db(cls, r: Sequence[Any]) -> Row:
        return cls(int(r[0]), orjson.loads(r[1]), int(r[2]), int(r[3]), r[4],
                   None if r[5] is None else int(r[5]))


_rng = random.Random()
"""The store's own generator: the process-wide one belongs to the application."""


def new_batch() -> int:
    """A batch id for one API call: microseconds and a random tail, unique in practice."""
    return time.time_ns() // 1000 * 1000 + _rng.getrandbits(9)


def _related(module: Module, values: Mapping[str, Any]) -> str:
    out: dict[str, list[str]] = {}
    for f in module.fields:
        value = values.get(f.api_name)
        if f.data_type == "lookup" and f.lookup and isinstance(value, dict):
            out.setdefault(f.lookup, []).append(str(value.get("id")))
    return _dumps(out)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_text(dialect: str, field: str) -> str:
    """SQL for a field's value as text, for a validated api_name."""
    if not NAME.match(field):
        raise ValueError(field)
    if dialect == "sqlite":
        return f"json_extract(data, '$.\"{field}\"')"
    return f"(data->>'{field}')"


# -- writes -----------------------------------------------------------------------------------

def _resolve(ctx: Ctx, module: Module, inp: rec.RecordInput) -> Flow[dict[str, Any]]:
    """Lookups get their target's name; a missing target is INVALID_DATA."""
    values = dict(inp.values)
    for key, value in inp.values.items():
        f = module.by_name[key]
        if value is None or f.data_type not in ("lookup", "ownerlookup", "userlookup"):
            continue
        path = inp.at(key)
        target_id = int(value["id"])
        if f.data_type == "lookup":
            name = yield Query("record_name", (ctx.org.id, f.lookup, target_id), "one")
            if name is None:
                raise InvalidData("invalid data", api_name=key, json_path=path)
            values[key] = {"name": name[0], "id": str(target_id)}
        else:
            user = ctx.users.get(target_id)
            if user is None:
                raise InvalidData("invalid data", api_name=key, json_path=path)
            values[key] = user.lookup() if f.data_type == "ownerlookup" else {
                "name": user.full_name, "id": str(user.id)}
    return values


def _check_unique(ctx: Ctx, module: Module, values: Mapping[str, Any], inp: rec.RecordInput,
                  exclude: int) -> Flow[None]:
    for f in module.fields:
        value = values.get(f.api_name)
        if not f.unique or value is None or isinstance(value, dict | list):
            continue
        found = yield _find_by(ctx, module, f.api_name, value, exclude)
        if found:
            raise DuplicateData("duplicate data", api_name=f.api_name,
                                json_path=inp.at(f.api_name),
                                duplicate_record={"id": str(found[0][0]), "module":
                                                  {"api_name": module.api_name}})


KEY_MAX = 255
"""The longest value (in characters) that record_keys holds; equal to the 255 of the
migration 0006 that fills it."""


def _find_by(ctx: Ctx, module: Module, field: str, value: Any, exclude: int = 0
             ) -> Query | Dynamic:
    """The first record (by id) other than `exclude` whose `field` equals `value`,
    case-insensitively: for a key field (`Module.keyed`) and a string or number of at most
    KEY_MAX characters an index lookup in record_keys, else (another field, a longer text, a
    boolean) a scan of the module's records, which `write_flow_budget_ms` bounds."""
    if (field in module.keyed and isinstance(value, str | int | float)
            and not isinstance(value, bool) and len(str(value)) <= KEY_MAX):
        return Query("find_by_key", (ctx.org.id, module.api_name, field, str(value), exclude),
                     "all")

    def build(dialect: str, start: int) -> tuple[str, list[Any]]:
        mark = "?" if dialect == "sqlite" else "$"
        sql = (f"SELECT id FROM records WHERE org_id = {mark}1 AND module = {mark}2 "
               f"AND lower(CAST({json_text(dialect, field)} AS TEXT)) = lower({mark}3) "
               f"AND id <> {mark}4 ORDER BY id LIMIT 1")
        return sql, [ctx.org.id, module.api_name, str(value), exclude]
    return Dynamic(build, "all")


def _system(ctx: Ctx, values: dict[str, Any], module: Module, creating: bool) -> None:
    values.update(rec.computed(module, values))
    me = {"name": ctx.user.full_name, "id": str(ctx.user.id)}
    values["Modified_By"] = me
    if creating:
        values["Created_By"] = me
        if "Owner" in module.by_name and not values.get("Owner"):
            values["Owner"] = ctx.user.lookup()


def _success(ctx: Ctx, message: str, row_id: int, data: Mapping[str, Any], created: int,
             modified: int) -> dict[str, Any]:
    tz = ctx.tz
    details = {"Modified_Time": clock.format_ms(modified, tz),
               "Modified_By": data.get("Modified_By"),
               "Created_Time": clock.format_ms(created, tz), "id": str(row_id),
               "Created_By": data.get("Created_By"), **APPROVED}
    return {"code": "SUCCESS", "details": details, "message": message, "status": "success"}


def _insert(ctx: Ctx, module: Module, inp: rec.RecordInput, parent: tuple[int, str | None]
            | None = None) -> Flow[tuple[int, dict[str, Any]]]:
    values = yield from _resolve(ctx, module, inp)
    yield from _check_unique(ctx, module, values, inp, 0)
    (counter,) = yield NextIds(1)
    row_id = clock.make_id(ctx.org.id_prefix, counter)
    _system(ctx, values, module, creating=True)
    if parent is not None:
        values["Parent_Id"] = {"name": parent[1], "id": str(parent[0])}
    name = rec.display_name(module, values)
    now = ctx.now_ms
    yield Query("insert_record", (row_id, ctx.org.id, module.api_name,
                                  parent[0] if parent else None, name, _dumps(values), now, now))
    yield from _write_subforms(ctx, module, inp, row_id, name, creating=True)
    yield Emit(ctx.org.id, module.api_name, row_id, "insert",
               _dumps(sorted(k for k, v in values.items() if v is not None)), _dumps(values),
               _related(module, values), ctx.batch, now, ctx.user.id)
    return row_id, values


def _update(ctx: Ctx, module: Module, inp: rec.RecordInput, old: Row) -> Flow[dict[str, Any]]:
    values = yield from _resolve(ctx, module, inp)
    yield from _check_unique(ctx, module, values, inp, old.id)
    merged = {**old.data, **values}
    _system(ctx, merged, module, creating=False)
    changed = rec.changed_values(old.data, {k: v for k, v in merged.items()
                                            if k != "Modified_By"})
    name = rec.display_name(module, merged)
    now = max(ctx.now_ms, old.modified_time)
    yield Query("update_record", (old.id, _dumps(merged), name, now))
    subforms_changed = yield from _write_subforms(ctx, module, inp, old.id, name,
                                                  creating=False)
    changed_names = sorted(changed) + sorted(subforms_changed)
    yield Emit(ctx.org.id, module.api_name, old.id, "update", _dumps(changed_names),
               _dumps(changed), _related(module, merged), ctx.batch, now, ctx.user.id)
    return merged


def _write_subforms(ctx: Ctx, module: Module, inp: rec.RecordInput, parent_id: int,
                    parent_name: str | None, *, creating: bool) -> Flow[list[str]]:
    """Subform rows are records of their own module; the given list replaces the old one."""
    touched: list[str] = []
    for key, rows in (inp.subforms or {}).items():
        sub = ctx.modules[module.by_name[key].subform or ""]
        existing = {} if creating else {
            r.id: r for r in map(Row.from_db, (yield Query(
                "subform_rows", (ctx.org.id, sub.api_name, parent_id), "all")))}
        keep: set[int] = set()
        for row in rows:
            if row.id is not None and row.id in existing:
                keep.add(row.id)
                yield from _update(ctx, sub, row, existing[row.id])
            elif row.id is not None:
                raise InvalidData("the id given seems to be invalid", api_name="id",
                                  json_path=row.at("id"))
            else:
                yield from _insert(ctx, sub, row, (parent_id, parent_name))
        for old_id, old in existing.items():
            if old_id not in keep:
                yield from _delete_row(ctx, sub, old)
        touched.append(key)
    return touched


def _delete_row(ctx: Ctx, module: Module, old: Row) -> Flow[None]:
    for f in module.subform_fields():
        sub = ctx.modules[f.subform or ""]
        rows = yield Query("subform_rows", (ctx.org.id, sub.api_name, old.id), "all")
        for r in rows:
            yield from _delete_row(ctx, sub, Row.from_db(r))
    yield Query("delete_record", (old.id,))
    me = _dumps({"name": ctx.user.full_name, "id": str(ctx.user.id)})
    yield Query("insert_deleted", (old.id, ctx.org.id, module.api_name, old.name,
                                   _dumps(old.data.get("Created_By")), me, ctx.now_ms))
    yield Emit(ctx.org.id, module.api_name, old.id, "delete", "[]",
               _dumps({"Modified_By": orjson.loads(me)}), _related(module, old.data), ctx.batch,
               ctx.now_ms, ctx.user.id)


def _lock(ctx: Ctx, module: Module, record_id: int) -> Flow[Row | None]:
    row = yield Query("lock_record", (ctx.org.id, module.api_name, record_id), "one")
    return None if row is None else Row.from_db(row)


def _invalid_id(index: int | None, record_id: int | None) -> ZohoError:
    err = InvalidData("the id given seems to be invalid", id=str(record_id))
    if index is not None:
        err.details = {"api_name": "id", "json_path": f"$.data[{index}].id"}
    return err


def write_records(ctx: Ctx, module: Module, action: str,
                  items: Sequence[rec.RecordInput | ZohoError],
                  duplicate_check: Sequence[str] = ()) -> Flow[list[dict[str, Any]]]:
    """Insert, update or upsert a batch; one result (success or error item) per input.

    Each record is written inside its own savepoint: a record refused part-way (a subform
    row whose lookup or id is refused, after the parent row was written) is rolled back
    whole, rows and journal events alike, and the others commit.
    """
    results: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, ZohoError):
            results.append(item.to_json())
            continue
        yield Savepoint("begin")
        try:
            result = yield from _write_one(ctx, module, action, item, duplicate_check)
        except ZohoError as err:
            yield Savepoint("rollback")
            results.append(err.to_json())
        else:
            yield Savepoint("release")
            results.append(result)
    return results


def _write_one(ctx: Ctx, module: Module, action: str, item: rec.RecordInput,
               duplicate_check: Sequence[str]) -> Flow[dict[str, Any]]:
    if action == "insert":
        row_id, values = yield from _insert(ctx, module, item)
        return _success(ctx, "record added", row_id, values, ctx.now_ms, ctx.now_ms)
    if action == "update":
        old = (yield from _lock(ctx, module, item.id)) if item.id else None
        if old is None:
            raise _invalid_id(item.index, item.id)
        merged = yield from _update(ctx, module, item, old)
        return _success(ctx, "record updated", old.id, merged, old.created_time,
                        max(ctx.now_ms, old.modified_time))
    return (yield from _upsert(ctx, module, item, duplicate_check))


def _upsert(ctx: Ctx, module: Module, item: rec.RecordInput,
            duplicate_check: Sequence[str]) -> Flow[dict[str, Any]]:
    old: Row | None = None
    dup_field: str | None = None
    if item.id is not None:
        old = yield from _lock(ctx, module, item.id)
    for field in duplicate_check:
        if old is not None:
            break
        value = item.values.get(field)
        if value is None or isinstance(value, dict | list):
            continue
        found = yield _find_by(ctx, module, field, value)
        if found:
            old = yield from _lock(ctx, module, int(found[0][0]))
            dup_field = field
    if old is None:
        rec.check_mandatory(module, item.values, item.index)
        row_id, values = yield from _insert(ctx, module, item)
        out = _success(ctx, "record added", row_id, values, ctx.now_ms, ctx.now_ms)
        out.update({"action": "insert", "duplicate_field": None})
        return out
    merged = yield from _update(ctx, module, item, old)
    out = _success(ctx, "record updated", old.id, merged, old.created_time,
                   max(ctx.now_ms, old.modified_time))
    out.update({"action": "update", "duplicate_field": dup_field})
    return out


def delete_records(ctx: Ctx, module: Module, ids: Sequence[int | ZohoError]
                   ) -> Flow[list[dict[str, Any]]]:
    results: list[dict[str, Any]] = []
    for item in ids:
        if isinstance(item, ZohoError):
            results.append(item.to_json())
            continue
        old = yield from _lock(ctx, module, item)
        if old is None:
            gone = yield Query("is_deleted", (ctx.org.id, module.api_name, item), "val")
            err = InvalidData("record not deleted" if gone else
                              "the id given seems to be invalid", id=str(item))
            results.append(err.to_json())
            continue
        yield from _delete_row(ctx, module, old)
        results.append({"code": "SUCCESS", "details": {"id": str(item)},
                        "message": "record deleted", "status": "success"})
    return results


# -- reads ------------------------------------------------------------------------------------

def get_record(ctx: Ctx, module: Module, record_id: int) -> Flow[dict[str, Any] | None]:
    """One record with its subform rows, as the API shows it."""
    row = yield Query("get_record", (ctx.org.id, module.api_name, record_id), "one")
    if row is None:
        return None
    r = Row.from_db(row)
    out = rec.render(module, r.id, r.data, r.created_time, r.modified_time, ctx.tz)
    for f in module.subform_fields():
        sub = ctx.modules[f.subform or ""]
        rows = yield Query("subform_rows_read", (ctx.org.id, sub.api_name, r.id), "all")
        out[f.api_name] = [
            rec.render(sub, s.id, s.data, s.created_time, s.modified_time, ctx.tz)
            for s in map(Row.from_db, rows)]
    return out


@dataclass(frozen=True, slots=True)
class ListQuery:
    page: int = 1
    per_page: int = 200
    offset: int = 0
    sort_by: str = "id"
    sort_order: str = "desc"
    ids: tuple[int, ...] = ()
    modified_since_ms: int | None = None
    where: Any = None
    """A criteria node (domain.criteria) or None."""
    field_types: Mapping[str, str] | None = None


_SORT_COLUMNS = {"id": "id", "Created_Time": "created_time", "Modified_Time": "modified_time"}


def list_rows(ctx: Ctx, module: Module, q: ListQuery) -> Flow[tuple[list[Row], bool]]:
    """A page of records, and whether more follow."""

    def build(dialect: str, start: int) -> tuple[str, list[Any]]:
        args: list[Any] = [ctx.org.id, module.api_name]

        def p(value: Any) -> str:
            args.append(value)
            return f"?{len(args)}" if dialect == "sqlite" else f"${len(args)}"

        where = ["org_id = " + ("?1" if dialect == "sqlite" else "$1"),
                 "module = " + ("?2" if dialect == "sqlite" else "$2")]
        if q.ids:
            where.append("id IN (" + ", ".join(p(i) for i in q.ids) + ")")
        if q.modified_since_ms is not None:
            where.append(f"modified_time >= {p(q.modified_since_ms)}")
        if q.where is not None:
            from crmwatch.domain import criteria

            sql, extra = criteria.compile_sql(q.where, dialect,  # type: ignore[arg-type]
                                              q.field_types or {}, param_start=len(args) + 1)
            args.extend(extra)
            where.append(f"({sql})")
        column = _SORT_COLUMNS.get(q.sort_by, "id")
        order = "ASC" if q.sort_order == "asc" else "DESC"
        text = (f"SELECT id, data, created_time, modified_time, name, parent_id FROM records "
                f"WHERE {' AND '.join(where)} ORDER BY {column} {order}, id {order} "
                f"LIMIT {p(q.per_page + 1)} OFFSET {p(q.offset)}")
        if dialect == "postgres":
            text = text.replace("SELECT id, data,", "SELECT id, data::text,", 1)
        return text, args

    rows = yield Dynamic(build, "all")
    more = len(rows) > q.per_page
    return [Row.from_db(r) for r in rows[: q.per_page]], more


def list_deleted(ctx: Ctx, module: Module, page: int, per_page: int
                 ) -> Flow[tuple[list[dict[str, Any]], bool]]:
    rows = yield Query("list_deleted", (ctx.org.id, module.api_name, per_page + 1,
                                        (page - 1) * per_page), "all")
    out = [{"deleted_by": orjson.loads(r[3]), "id": str(r[0]), "display_name": r[1],
            "type": "recycle", "created_by": orjson.loads(r[2]),
            "deleted_time": clock.format_ms(int(r[4]), ctx.tz)} for r in rows[:per_page]]
    return out, len(rows) > per_page


def changes(org_id: int, since: int, limit: int) -> Flow[tuple[list[Sequence[Any]], int]]:
    """Journal rows after `since`, and the org's current head."""
    rows = yield Query("changes", (org_id, since, limit), "all")
    head = yield Query("journal_head", (org_id,), "val")
    return list(rows), int(head or 0)
