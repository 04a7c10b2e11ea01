"""Notification channels (`/crm/{v}/actions/watch`): parse requests, apply them, render replies.

Pure: no I/O; time comes in as epoch milliseconds. The flow of one write request is

    inputs = parse_request(body, method, version, modules, now_ms)   # one entry per watch[i]
    for each ChannelInput: new = apply(stored.get(inp.channel_id), inp, now_ms)
    reply item: action_item(inp, new, base_url, version.name, modules, tz)

A channel is stored expanded (`Leads.all` becomes edit, create, delete) and is live while
`expiry_ms > now`; an expired channel behaves as if it did not exist (NOT_SUBSCRIBED for PUT
and PATCH, a fresh channel on POST). Choices where spec/notifications.md is silent:

* JSON `null` for any key counts as absent (a mandatory key that is null is missing).
* PATCH (merge) requires only `channel_id`; `events` there are added per module, and a given
  `notification_condition` replaces the stored list as a whole (a key present is changed).
* POST on a live channel replaces the events and conditions of the modules it names, sets
  the settings it gives, keeps the others, and resets the expiry.
* Conditions only exist for watched modules: on POST/PUT a condition for a module absent from
  `events` is INVALID_DATA; after a merge or a removal, conditions of unwatched modules go.
* `insert` and `update` are accepted as aliases of `create` and `edit` in `events`; module
  names and operations match case-insensitively; field and module refs in conditions too.
* The same `channel_id` twice in one body is not an error: the items apply in order.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from crmwatch.domain import clock
from crmwatch.domain.addresses import ALWAYS, AddressPolicy
from crmwatch.domain.errors import (
    Ambiguity,
    DependentFieldMissing,
    ExpectedFieldMissing,
    InvalidData,
    LimitExceeded,
    MandatoryNotFound,
    NotSubscribed,
    RequiredParamMissing,
    ZohoError,
)
from crmwatch.domain.modules import Field, Module
from crmwatch.domain.versions import ApiVersion

Method: TypeAlias = Literal["enable", "replace", "merge", "remove_events"]

OPERATIONS = ("edit", "create", "delete")
"""The stored event operations, in the order GET lists them (D7-get)."""
OP_ALIASES: Mapping[str, tuple[str, ...]] = {
    "create": ("create",), "edit": ("edit",), "delete": ("delete",), "all": OPERATIONS,
    "insert": ("create",), "update": ("edit",),
}
MAX_CHANNELS = 100
MAX_TOKEN = 50
MAX_CONDITION_FIELDS = 10
MAX_GROUP = 2
MAX_DEPTH = 20
"""Nesting limit of condition groups: 10 fields need at most 10 levels; this bounds the
recursion on one-element groups while letting the field count report first."""
DEFAULT_EXPIRY_MS = 3_600_000
DEFAULT_NOTIFY_ON_RELATED = True
"""spec/notifications.md section 10: the newest docs and the FAQ say true."""
MAX_CHANNEL_ID = 2**63 - 1

MESSAGES: Mapping[str, str] = {
    "enable": "Successfully subscribed for actions-watch of the given module",
    "replace": "Successfully subscribed for actions-watch of the given module",
    "merge": "Successfully updated the subscribe details",
    "remove_events": "Successfully removed the subscribe details",
    "delete": "Successfully un-subscribed from actions-watch",
}
MANDATORY: Mapping[str, tuple[str, ...]] = {
    "enable": ("channel_id", "events", "notify_url"),
    "replace": ("channel_id", "events", "notify_url"),
    "merge": ("channel_id",),
    "remove_events": ("channel_id", "events", "_delete_events"),
}
KEYS = frozenset({
    "channel_id", "events", "notify_url", "token", "channel_expiry",
    "return_affected_field_values", "return_affected_values", "notify_on_related_action",
    "fields", "_delete_events", "resource_uri", "resource_id", "resource_name",
})
"""Keys every version accepts (`resource_*`, echoed by some clients, are ignored);
`notification_condition` is added from v6."""
CONDITION_KEYS = frozenset({"type", "module", "field_selection"})
NODE_KEYS = frozenset({"field", "group", "group_operator"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


# -- notification_condition ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FieldRef:
    """A selected field of a `field_selection`."""

    api_name: str
    id: int


@dataclass(frozen=True, slots=True)
class FieldGroup:
    """`{"group_operator": "and"|"or", "group": [node, node]}`."""

    operator: str
    operands: tuple[Selection, ...]


Selection: TypeAlias = "FieldRef | FieldGroup"


def selected_fields(node: Selection) -> tuple[str, ...]:
    """Every field a selection names, left to right."""
    if isinstance(node, FieldRef):
        return (node.api_name,)
    return tuple(name for op in node.operands for name in selected_fields(op))


def satisfied(node: Selection, changed: Collection[str]) -> bool:
    """True when a write that changed `changed` meets the selection (`or`: any, `and`: all)."""
    if isinstance(node, FieldRef):
        return node.api_name in changed
    results = (satisfied(op, changed) for op in node.operands)
    return all(results) if node.operator == "and" else any(results)


def selection_json(node: Selection, *, padded: bool = False) -> dict[str, Any]:
    """A selection in Zoho's shape; `padded` adds GET's `group_operator`/`group` nulls."""
    if isinstance(node, FieldRef):
        out: dict[str, Any] = {"field": {"api_name": node.api_name, "id": str(node.id)}}
        if padded:
            out.update(group_operator=None, group=None)
        return out
    return {"group_operator": node.operator,
            "group": [selection_json(op, padded=padded) for op in node.operands]}


def _selection_from_doc(doc: Any) -> Selection:
    if isinstance(doc, Mapping) and isinstance(doc.get("field"), Mapping):
        return FieldRef(str(doc["field"]["api_name"]), int(doc["field"].get("id") or 0))
    if (isinstance(doc, Mapping) and doc.get("group_operator") in ("and", "or")
            and isinstance(doc.get("group"), list)):
        return FieldGroup(doc["group_operator"],
                          tuple(_selection_from_doc(g) for g in doc["group"]))
    raise ValueError(f"not a stored field selection: {doc!r}")


# -- the channel ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Channel:
    """A stored channel; `events` maps a module's API name to its watched operations."""

    channel_id: str
    notify_url: str
    token: str | None
    expiry_ms: int
    return_affected_field_values: bool
    notify_on_related_action: bool
    events: Mapping[str, frozenset[str]]
    conditions: Mapping[str, Selection]
    fields: object | None
    created_ms: int
    updated_ms: int

    def is_live(self, at_ms: int) -> bool:
        return self.expiry_ms > at_ms

    def watches(self, module: str, operation: str) -> bool:
        """True when the channel watches `operation` (create, edit, delete) on `module`."""
        return operation in self.events.get(module, ())

    def to_doc(self) -> dict[str, Any]:
        """A JSON-able dict, for the journal and the channels table."""
        return {
            "channel_id": self.channel_id,
            "notify_url": self.notify_url,
            "token": self.token,
            "expiry_ms": self.expiry_ms,
            "return_affected_field_values": self.return_affected_field_values,
            "notify_on_related_action": self.notify_on_related_action,
            "events": {m: [op for op in OPERATIONS if op in ops]
                       for m, ops in self.events.items()},
            "conditions": {m: selection_json(n) for m, n in self.conditions.items()},
            "fields": self.fields,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Channel:
        """The inverse of `to_doc`; raises ValueError (or KeyError) for a malformed doc."""
        events = {str(m): frozenset(str(op) for op in ops) for m, ops in doc["events"].items()}
        if any(not ops <= set(OPERATIONS) for ops in events.values()):
            raise ValueError("unknown operation in stored events")
        token = doc.get("token")
        return cls(
            channel_id=str(doc["channel_id"]),
            notify_url=str(doc["notify_url"]),
            token=None if token is None else str(token),
            expiry_ms=int(doc["expiry_ms"]),
            return_affected_field_values=bool(doc["return_affected_field_values"]),
            notify_on_related_action=bool(doc["notify_on_related_action"]),
            events=events,
            conditions={str(m): _selection_from_doc(n)
                        for m, n in (doc.get("conditions") or {}).items()},
            fields=doc.get("fields"),
            created_ms=int(doc["created_ms"]),
            updated_ms=int(doc["updated_ms"]),
        )


@dataclass(frozen=True, slots=True)
class ChannelInput:
    """One checked item of `watch[]`; None means the key was not given.

    `method` is the item's own: on PATCH, `_delete_events: true` makes it `remove_events`.
    `expiry_ms` is already the effective expiry (default or requested, see `effective_expiry`);
    for POST and PUT it is always set.
    """

    index: int
    method: Method
    channel_id: str
    events: Mapping[str, frozenset[str]] | None = None
    notify_url: str | None = None
    token: str | None = None
    expiry_ms: int | None = None
    return_affected_field_values: bool | None = None
    notify_on_related_action: bool | None = None
    conditions: Mapping[str, Selection] | None = None
    fields: object | None = None


# -- small helpers -------------------------------------------------------------------------

def normalise_channel_id(value: object) -> str | None:
    """A channel id in canonical decimal form, or None when it is not a valid long.

    Accepts a JSON integer (not a boolean) or a string of 1-19 ASCII digits, 0 <= id < 2**63.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif (isinstance(value, str) and value.isascii() and value.isdigit()
          and 0 < len(value) <= 19):
        number = int(value)
    else:
        return None
    return str(number) if 0 <= number <= MAX_CHANNEL_ID else None


def parse_channel_ids(text: str | None, param: str = "channel_ids") -> list[str]:
    """The comma-separated ids of `DELETE ?channel_ids=`, canonical and without repeats."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not parts:
        raise RequiredParamMissing(param_name=param)
    ids: dict[str, None] = {}
    for part in parts:
        cid = normalise_channel_id(part)
        if cid is None:
            raise InvalidData("invalid data", param_name=param, expected_data_type="long")
        ids[cid] = None
    return list(ids)


def resolve_module(name: str, modules: Mapping[str, Module]) -> Module | None:
    """The module called `name`, matched case-insensitively."""
    found = modules.get(name)
    if found is not None:
        return found
    lowered = name.lower()
    for m in modules.values():
        if m.api_name.lower() == lowered:
            return m
    return None


def default_expiry(now_ms: int) -> int:
    """Now + 1 hour, at whole seconds (what the reply shows is what applies)."""
    return (now_ms + DEFAULT_EXPIRY_MS) // 1000 * 1000


def effective_expiry(requested_ms: int | None, now_ms: int, max_expiry: timedelta) -> int:
    """The expiry a channel gets: absent or beyond `max_expiry` from now -> now + 1 hour.

    Otherwise the requested instant at seconds precision; raises ValueError when that is not
    after `now_ms`.
    """
    if requested_ms is None:
        return default_expiry(now_ms)
    requested = requested_ms // 1000 * 1000
    if requested <= now_ms:
        raise ValueError("channel_expiry is not in the future")
    if requested - now_ms > max_expiry // timedelta(milliseconds=1):
        return default_expiry(now_ms)
    return requested


# -- parsing -------------------------------------------------------------------------------

def parse_request(body: object, method: Method, version: ApiVersion,
                  modules: Mapping[str, Module], now_ms: int, *,
                  max_expiry: timedelta | None = None,
                  policy: AddressPolicy = ALWAYS) -> list[ChannelInput | ZohoError]:
    """Check a POST/PUT/PATCH body: one ChannelInput or error per item of `watch`.

    `method` "merge" and "remove_events" both mean PATCH: each item's `_delete_events`
    decides which it is. Request-level problems (not an object, no `watch`, more than 100
    items) raise. `max_expiry` overrides the version's maximum channel lifetime. A
    `notify_url` that `policy` says can never be delivered to is INVALID_DATA.
    """
    if not isinstance(body, Mapping):
        raise InvalidData("the body must be a JSON object", expected_data_type="jsonobject")
    items = body.get("watch")
    if items is None:
        raise RequiredParamMissing(param_name="watch")
    if not isinstance(items, list):
        raise InvalidData("invalid data", api_name="watch", json_path="$.watch",
                          expected_data_type="jsonarray")
    if not items:
        raise InvalidData("no channels given", api_name="watch", json_path="$.watch")
    if len(items) > MAX_CHANNELS:
        raise LimitExceeded("too many channels", api_name="watch", limit=MAX_CHANNELS)
    limit = max_expiry if max_expiry is not None else version.max_channel_expiry
    parser = _Parser(version, modules, now_ms, limit, policy)
    out: list[ChannelInput | ZohoError] = []
    for i, raw in enumerate(items):
        try:
            out.append(parser.item(raw, i, method))
        except ZohoError as err:
            out.append(err)
    return out


def _invalid(key: str, path: str, **more: object) -> InvalidData:
    return InvalidData("invalid data", api_name=key, json_path=path, **more)


class _Parser:
    """Per-request context of `parse_request`."""

    def __init__(self, version: ApiVersion, modules: Mapping[str, Module], now_ms: int,
                 max_expiry: timedelta, policy: AddressPolicy) -> None:
        self.version = version
        self.modules = modules
        self.now_ms = now_ms
        self.max_expiry = max_expiry
        self.policy = policy

    def item(self, raw: object, i: int, method: Method) -> ChannelInput:
        path = f"$.watch[{i}]"
        if not isinstance(raw, Mapping):
            raise InvalidData("invalid data", json_path=path, expected_data_type="jsonobject")
        accepted = KEYS | ({"notification_condition"}
                           if self.version.has_notification_condition else set())
        for key in raw:
            if key not in accepted:
                raise _invalid(str(key), f"{path}.{key}")
        delete_events = self._bool(raw, "_delete_events", path)
        if method in ("merge", "remove_events"):
            kind: Method = "remove_events" if delete_events else "merge"
        else:
            kind = method
            if delete_events:
                raise _invalid("_delete_events", f"{path}._delete_events")
        for key in MANDATORY[kind]:
            if raw.get(key) is None:
                raise MandatoryNotFound(api_name=key, json_path=f"{path}.{key}")
        channel_id = normalise_channel_id(raw["channel_id"])
        if channel_id is None:
            raise _invalid("channel_id", f"{path}.channel_id", expected_data_type="long")
        events = None if raw.get("events") is None else self._events(raw["events"], path)
        notify_url = self._url(raw.get("notify_url"), path)
        token = self._token(raw.get("token"), path)
        expiry = self._expiry(raw.get("channel_expiry"), path)
        if expiry is None and kind in ("enable", "replace"):
            expiry = default_expiry(self.now_ms)
        affected = self._bool(raw, "return_affected_field_values", path)
        alias = self._bool(raw, "return_affected_values", path)
        related = self._bool(raw, "notify_on_related_action", path)
        conditions = None
        if raw.get("notification_condition") is not None:
            conditions = self._conditions(raw["notification_condition"], path)
            if kind in ("enable", "replace"):
                _conditions_watched(conditions, events or {}, path)
        return ChannelInput(
            index=i, method=kind, channel_id=channel_id, events=events, notify_url=notify_url,
            token=token, expiry_ms=expiry,
            return_affected_field_values=affected if affected is not None else alias,
            notify_on_related_action=related, conditions=conditions,
            fields=self._fields(raw.get("fields"), path),
        )

    # one key at a time ------------------------------------------------------------------

    @staticmethod
    def _bool(raw: Mapping[str, Any], key: str, path: str) -> bool | None:
        value = raw.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise _invalid(key, f"{path}.{key}", expected_data_type="boolean")

    def _events(self, value: object, path: str) -> dict[str, frozenset[str]]:
        if not isinstance(value, list):
            raise _invalid("events", f"{path}.events", expected_data_type="jsonarray")
        if not value:
            raise _invalid("events", f"{path}.events")
        events: dict[str, frozenset[str]] = {}
        for j, text in enumerate(value):
            where = f"{path}.events[{j}]"
            if not isinstance(text, str):
                raise _invalid("events", where, expected_data_type="string")
            name, dot, op = text.rpartition(".")
            module = resolve_module(name, self.modules) if dot and name else None
            if module is None:
                raise _invalid("events", where)
            ops = OP_ALIASES.get(op.lower())
            if ops is None:
                raise _invalid("events", where,
                               supported_values=["create", "edit", "delete", "all"])
            events[module.api_name] = events.get(module.api_name, frozenset()) | set(ops)
        return events

    def _url(self, value: object, path: str) -> str | None:
        if value is None:
            return None
        where = f"{path}.notify_url"
        if not isinstance(value, str):
            raise _invalid("notify_url", where, expected_data_type="string")
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            raise _invalid("notify_url", where) from None
        if (parts.scheme.lower() not in ("http", "https") or not parts.hostname
                or any(c.isspace() or not c.isprintable() for c in parts.netloc)):
            raise _invalid("notify_url", where)
        refusal = self.policy.url_refusal(value)
        if refusal is not None:
            raise InvalidData(f"notify_url can never be delivered to: {refusal}",
                              api_name="notify_url", json_path=where)
        return value

    @staticmethod
    def _token(value: object, path: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _invalid("token", f"{path}.token", expected_data_type="string")
        if len(value) > MAX_TOKEN:
            raise _invalid("token", f"{path}.token", maximum_length=MAX_TOKEN)
        return value

    def _expiry(self, value: object, path: str) -> int | None:
        if value is None:
            return None
        where = f"{path}.channel_expiry"
        if not isinstance(value, str):
            raise _invalid("channel_expiry", where, expected_data_type="datetime")
        try:
            moment = clock.parse_datetime(value)
        except ValueError:
            raise _invalid("channel_expiry", where, expected_data_type="datetime") from None
        requested = (moment - _EPOCH) // timedelta(seconds=1) * 1000
        try:
            return effective_expiry(requested, self.now_ms, self.max_expiry)
        except ValueError:
            raise InvalidData("the expiry time is in the past", api_name="channel_expiry",
                              json_path=where) from None

    @staticmethod
    def _fields(value: object, path: str) -> object | None:
        if value is None or isinstance(value, Mapping | list):
            return value
        raise _invalid("fields", f"{path}.fields", expected_data_type="jsonobject")

    # notification_condition -------------------------------------------------------------

    def _conditions(self, value: object, path: str) -> dict[str, Selection]:
        where = f"{path}.notification_condition"
        if not isinstance(value, list):
            raise _invalid("notification_condition", where, expected_data_type="jsonarray")
        out: dict[str, Selection] = {}
        for k, raw in enumerate(value):
            module, node = self._condition(raw, f"{where}[{k}]")
            if module.api_name in out:
                raise InvalidData("a module may have one condition only", api_name="module",
                                  json_path=f"{where}[{k}].module")
            out[module.api_name] = node
        return out

    def _condition(self, raw: object, path: str) -> tuple[Module, Selection]:
        if not isinstance(raw, Mapping):
            raise _invalid("notification_condition", path, expected_data_type="jsonobject")
        for key in raw:
            if key not in CONDITION_KEYS:
                raise _invalid(str(key), f"{path}.{key}")
        if raw.get("type") is None:
            if raw.get("field_selection") is not None:
                raise DependentFieldMissing(
                    api_name="field_selection", json_path=f"{path}.field_selection",
                    dependee={"api_name": "type", "json_path": f"{path}.type"})
            raise MandatoryNotFound(api_name="type", json_path=f"{path}.type")
        if raw["type"] != "field_selection":
            raise _invalid("type", f"{path}.type", supported_values=["field_selection"])
        if raw.get("module") is None:
            raise MandatoryNotFound(api_name="module", json_path=f"{path}.module")
        by_id = {m.id: m for m in self.modules.values() if m.id}
        module = _resolve_ref(raw["module"], "module", f"{path}.module",
                              lambda n: resolve_module(n, self.modules), by_id.get)
        if raw.get("field_selection") is None:
            raise MandatoryNotFound(api_name="field_selection",
                                    json_path=f"{path}.field_selection")
        root = f"{path}.field_selection"
        return module, _NodeParser(module, root).node(raw["field_selection"], root, 1)


class _NodeParser:
    """Parses one `field_selection` tree of a module, counting its fields."""

    def __init__(self, module: Module, root: str) -> None:
        self.module = module
        self.root = root
        self.count = 0
        self.by_id = {f.id: f for f in module.fields if f.id}
        self.by_lower = {f.api_name.lower(): f for f in module.fields}

    def field(self, name: str) -> Field | None:
        return self.module.by_name.get(name) or self.by_lower.get(name.lower())

    def node(self, raw: object, path: str, depth: int) -> Selection:
        if not isinstance(raw, Mapping):
            raise _invalid("field_selection", path, expected_data_type="jsonobject")
        if depth > MAX_DEPTH:
            raise InvalidData("the selection is nested too deeply", api_name="group",
                              json_path=path, maximum_length=MAX_DEPTH)
        for key in raw:
            if key not in NODE_KEYS:
                raise _invalid(str(key), f"{path}.{key}")
        field, group, operator = raw.get("field"), raw.get("group"), raw.get("group_operator")
        if field is not None:
            if group is not None or operator is not None:
                raise InvalidData("a node is either a field or a group", api_name="field",
                                  json_path=f"{path}.field")
            found = _resolve_ref(field, "field", f"{path}.field", self.field, self.by_id.get)
            self.count += 1
            if self.count > MAX_CONDITION_FIELDS:
                raise _invalid("field_selection", self.root,
                               maximum_length=MAX_CONDITION_FIELDS)
            return FieldRef(found.api_name, found.id)
        if group is None and operator is None:
            raise ExpectedFieldMissing(expected_fields=[
                {"api_name": "field", "json_path": f"{path}.field"},
                {"api_name": "group", "json_path": f"{path}.group"}])
        if operator is None:
            raise MandatoryNotFound(api_name="group_operator", json_path=f"{path}.group_operator")
        if group is None:
            raise MandatoryNotFound(api_name="group", json_path=f"{path}.group")
        if not isinstance(operator, str) or operator.lower() not in ("and", "or"):
            raise _invalid("group_operator", f"{path}.group_operator",
                           supported_values=["and", "or"])
        if not isinstance(group, list):
            raise _invalid("group", f"{path}.group", expected_data_type="jsonarray")
        if not group:
            raise _invalid("group", f"{path}.group")
        if len(group) > MAX_GROUP:
            raise _invalid("group", f"{path}.group", maximum_length=MAX_GROUP)
        operands = tuple(self.node(g, f"{path}.group[{k}]", depth + 1)
                         for k, g in enumerate(group))
        return FieldGroup(operator.lower(), operands)


def _conditions_watched(conditions: Mapping[str, Selection],
                        events: Mapping[str, frozenset[str]], path: str) -> None:
    for k, name in enumerate(conditions):
        if name not in events:
            raise InvalidData("the module is not among the channel's events", api_name="module",
                              json_path=f"{path}.notification_condition[{k}].module")


def _resolve_ref(raw: object, key: str, path: str, by_name: Callable[[str], T | None],
                 by_id: Callable[[int], T | None]) -> T:
    """A `{"api_name": ..., "id": ...}` reference: either or both, which must agree."""
    if not isinstance(raw, Mapping):
        raise _invalid(key, path, expected_data_type="jsonobject")
    name, rid = raw.get("api_name"), raw.get("id")
    name_path, id_path = f"{path}.api_name", f"{path}.id"
    if name is None and rid is None:
        raise ExpectedFieldMissing(expected_fields=[
            {"api_name": "api_name", "json_path": name_path},
            {"api_name": "id", "json_path": id_path}])
    named = by_id_found = None
    if name is not None:
        if not isinstance(name, str):
            raise _invalid("api_name", name_path, expected_data_type="string")
        named = by_name(name)
        if named is None:
            raise _invalid("api_name", name_path)
    if rid is not None:
        text = normalise_channel_id(rid)  # same rule: a long, as string or number
        if text is None:
            raise _invalid("id", id_path, expected_data_type="long")
        by_id_found = by_id(int(text))
        if by_id_found is None:
            raise _invalid("id", id_path)
    if named is not None and by_id_found is not None and named != by_id_found:
        raise Ambiguity(ambiguity_due_to=[{"api_name": "api_name", "json_path": name_path},
                                          {"api_name": "id", "json_path": id_path}])
    result = named if named is not None else by_id_found
    assert result is not None
    return result


# -- applying ------------------------------------------------------------------------------

def too_many_channels(inp: ChannelInput, limit: int) -> LimitExceeded:
    """The item's error when its org already has `limit` live channels."""
    return LimitExceeded(f"the org already has {limit} channels, the most it may have",
                         api_name="channel_id", json_path=f"$.watch[{inp.index}].channel_id",
                         limit=limit)


def require_live(existing: Channel | None, now_ms: int) -> Channel:
    """The channel if it exists and has not expired; NOT_SUBSCRIBED otherwise."""
    if existing is None or not existing.is_live(now_ms):
        raise NotSubscribed()
    return existing


def _watched(conditions: Mapping[str, Selection],
             events: Mapping[str, frozenset[str]]) -> dict[str, Selection]:
    return {m: c for m, c in conditions.items() if m in events}


def apply(existing: Channel | None, inp: ChannelInput, now_ms: int, *,
          related_default: bool = DEFAULT_NOTIFY_ON_RELATED) -> Channel | None:
    """The channel after one item of POST, PUT or PATCH; None when it has no events left.

    An expired `existing` counts as absent. PUT and PATCH on an absent channel raise
    NotSubscribed; POST creates it or, when live, updates the modules it names.
    """
    live = existing if existing is not None and existing.is_live(now_ms) else None
    if inp.method == "enable" and live is None:
        return _fresh(inp, now_ms, now_ms, related_default)
    live = require_live(live, now_ms)
    if inp.method == "replace":
        return _fresh(inp, live.created_ms, now_ms, related_default)
    events = dict(live.events)
    conditions: Mapping[str, Selection] = live.conditions
    if inp.method == "remove_events":
        for module, ops in (inp.events or {}).items():
            left = events.get(module, frozenset()) - ops
            if left:
                events[module] = left
            else:
                events.pop(module, None)
        if not events:
            return None
        return replace(live, events=events, conditions=_watched(conditions, events),
                       notify_on_related_action=_given(inp.notify_on_related_action,
                                                       live.notify_on_related_action),
                       updated_ms=now_ms)
    if inp.method == "enable":
        named = inp.events or {}
        events.update(named)
        conditions = {**{m: c for m, c in conditions.items() if m not in named},
                      **(inp.conditions or {})}
        expiry = inp.expiry_ms if inp.expiry_ms is not None else default_expiry(now_ms)
    else:  # merge
        for module, ops in (inp.events or {}).items():
            events[module] = events.get(module, frozenset()) | ops
        if inp.conditions is not None:
            conditions = inp.conditions
        expiry = _given(inp.expiry_ms, live.expiry_ms)
    return Channel(
        channel_id=live.channel_id,
        notify_url=_given(inp.notify_url, live.notify_url),
        token=_given(inp.token, live.token),
        expiry_ms=expiry,
        return_affected_field_values=_given(inp.return_affected_field_values,
                                            live.return_affected_field_values),
        notify_on_related_action=_given(inp.notify_on_related_action,
                                        live.notify_on_related_action),
        events=events,
        conditions=_watched(conditions, events),
        fields=_given(inp.fields, live.fields),
        created_ms=live.created_ms,
        updated_ms=now_ms,
    )


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def _fresh(inp: ChannelInput, created_ms: int, now_ms: int,
           related_default: bool) -> Channel | None:
    if inp.notify_url is None:
        raise ValueError("a new channel needs notify_url")
    events = dict(inp.events or {})
    if not events:
        return None
    return Channel(
        channel_id=inp.channel_id,
        notify_url=inp.notify_url,
        token=inp.token,
        expiry_ms=inp.expiry_ms if inp.expiry_ms is not None else default_expiry(now_ms),
        return_affected_field_values=bool(inp.return_affected_field_values),
        notify_on_related_action=_given(inp.notify_on_related_action, related_default),
        events=events,
        conditions=_watched(inp.conditions or {}, events),
        fields=inp.fields,
        created_ms=created_ms,
        updated_ms=now_ms,
    )


# -- rendering -----------------------------------------------------------------------------

def _resource(name: str, base_url: str, version_name: str,
              modules: Mapping[str, Module]) -> dict[str, str]:
    module = modules.get(name)
    return {"resource_uri": f"{base_url.rstrip('/')}/crm/{version_name}/{name}",
            "resource_id": str(module.id if module is not None else 0),
            "resource_name": name}


def _success(message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"code": "SUCCESS", "status": "success", "message": message, "details": details}


def action_item(inp: ChannelInput, channel: Channel | None, base_url: str, version_name: str,
                modules: Mapping[str, Module], tz: ZoneInfo) -> dict[str, Any]:
    """The success item of one POST/PUT/PATCH input, `channel` being the result of `apply`.

    `details.events` has one entry per module: every module of the channel for POST and PUT,
    the modules named by a merge (all when it names none), the modules named by a removal
    (those entries carry no `channel_expiry`).
    """
    names: Iterable[str]
    if inp.method == "remove_events" or channel is None:
        names = (inp.events or {}).keys()
    elif inp.method == "merge" and inp.events:
        names = inp.events.keys()
    else:
        names = channel.events.keys()
    entries = []
    for name in names:
        entry: dict[str, Any] = {}
        if channel is not None and inp.method != "remove_events":
            entry["channel_expiry"] = clock.format_ms(channel.expiry_ms, tz)
        entry.update(_resource(name, base_url, version_name, modules))
        entry["channel_id"] = inp.channel_id
        entries.append(entry)
    return _success(MESSAGES[inp.method], {"events": entries})


def delete_items(channel: Channel, base_url: str, version_name: str,
                 modules: Mapping[str, Module]) -> list[dict[str, Any]]:
    """The DELETE reply items for one channel: one per (channel, module)."""
    items = []
    for name in channel.events:
        res = _resource(name, base_url, version_name, modules)
        items.append(_success(MESSAGES["delete"], {
            "resource_uri": res["resource_uri"], "resource_id": res["resource_id"],
            "channel_id": channel.channel_id}))
    return items


def get_entries(channel: Channel, base_url: str, version_name: str,
                modules: Mapping[str, Module], tz: ZoneInfo, *,
                module: str | None = None) -> list[dict[str, Any]]:
    """GET's entries for one channel: one per watched module (or only `module`)."""
    entries = []
    for name, ops in channel.events.items():
        if module is not None and name.lower() != module.lower():
            continue
        res = _resource(name, base_url, version_name, modules)
        condition = channel.conditions.get(name)
        entries.append({
            "notify_on_related_action": channel.notify_on_related_action,
            "channel_expiry": clock.format_ms(channel.expiry_ms, tz),
            "return_affected_field_values": channel.return_affected_field_values,
            "resource_uri": res["resource_uri"],
            "resource_id": res["resource_id"],
            "notify_url": channel.notify_url,
            "resource_name": name,
            "fields": channel.fields,
            "notification_condition": None if condition is None else [{
                "type": "field_selection",
                "module": {"api_name": name, "id": res["resource_id"]},
                "field_selection": selection_json(condition, padded=True),
            }],
            "channel_id": channel.channel_id,
            "events": [f"{name}.{op}" for op in OPERATIONS if op in ops],
            "token": channel.token,
        })
    return entries


def live_channels(channels: Sequence[Channel], now_ms: int) -> list[Channel]:
    """The channels GET lists: live ones, in the given order."""
    return [c for c in channels if c.is_live(now_ms)]
