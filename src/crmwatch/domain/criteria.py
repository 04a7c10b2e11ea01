"""Record criteria: parse Zoho's two criteria syntaxes, evaluate them, compile them to SQL.

Pure: no I/O. One AST serves both syntaxes:

* Search Records (`GET /crm/{v}/{Module}/search?criteria=...`), a string such as
  `((Last_Name:equals:Burns\\,B)and(First_Name:starts_with:M))` -> `parse_search`;
* Bulk Read (`query.criteria` of `POST /crm/bulk/{v}/read`), JSON such as
  `{"group_operator": "and", "group": [{"field": {"api_name": "Lead_Source"},
  "comparator": "equal", "value": "Advertisement"}, ...]}` -> `parse_bulk`.

Operator vocabulary of the AST: equals, not_equal, starts_with, ends_with, contains,
not_contains, in, not_in, greater_than, greater_equal, less_than, less_equal, between,
not_between, is_empty, is_not_empty (the last two come from Bulk Read's `${EMPTY}` value).

Semantics, identical in `evaluate` and in the SQL of `compile_sql` (property-tested):

* values are compared in stored form (see `crmwatch.domain.records`); a stored value of the
  wrong JSON type counts as missing;
* text-like values (text, textarea, email, phone, website, picklist, autonumber and the items
  of a multi-select picklist) compare case-insensitively, folding ASCII letters only (what
  SQLite's `lower()` and PostgreSQL's `lower(... COLLATE "C")` do);
* a multi-select picklist matches when any of its items matches;
* lookups compare the related record's id;
* `Created_Time` / `Modified_Time` (epoch-millisecond columns) compare at whole-second
  granularity, as Zoho shows them: `equals 10:00:00` matches 10:00:00.000 - 10:00:00.999;
* a missing value never satisfies a positive operator, and every negative operator
  (not_equal, not_in, not_contains, not_between, is_not_empty) is the exact complement of
  its positive one, so it matches records where the field is empty;
* between is inclusive at both ends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Final, Literal, TypeAlias, TypeVar

from crmwatch.domain import clock
from crmwatch.domain.errors import ZohoError

__all__ = [
    "BULK_COMPARATORS",
    "MAX_BULK_CONDITIONS",
    "MAX_BULK_VALUES",
    "MAX_CRITERIA_DEPTH",
    "MAX_SEARCH_CONDITIONS",
    "MAX_SEARCH_VALUES",
    "OPERATORS",
    "Condition",
    "CriteriaError",
    "Group",
    "Node",
    "compile_sql",
    "conditions",
    "evaluate",
    "parse_bulk",
    "parse_search",
]

# -- AST ----------------------------------------------------------------------------------------

OPERATORS: Final = frozenset(
    [
        "equals",
        "not_equal",
        "starts_with",
        "ends_with",
        "contains",
        "not_contains",
        "in",
        "not_in",
        "greater_than",
        "greater_equal",
        "less_than",
        "less_equal",
        "between",
        "not_between",
        "is_empty",
        "is_not_empty",
    ]
)


@dataclass(frozen=True, slots=True)
class Condition:
    """`field op values`, values in normalised form.

    Normalised values: text-like and multi-select values as given (str); integer, bigint and
    `id` as int; double, currency and percent as float; boolean as bool; date as
    `YYYY-MM-DD`; datetime (also `Created_Time` / `Modified_Time`) as UTC text
    `YYYY-MM-DDTHH:MM:SS+00:00`; lookups as the related id in digits (str). `between` takes
    two values, `in` one or more, is_empty / is_not_empty none, every other operator one.

    `data_type` is the field's type when the condition came from a parser; `evaluate` uses it
    (`compile_sql` always takes types from its `fields` argument).
    """

    field: str
    op: str
    values: tuple[object, ...]
    data_type: str = ""


@dataclass(frozen=True, slots=True)
class Group:
    op: Literal["and", "or"]
    items: tuple[Node, ...]


Node: TypeAlias = Condition | Group


def conditions(node: Node) -> Iterator[Condition]:
    """The conditions of a tree, left to right."""
    if isinstance(node, Condition):
        yield node
    else:
        for item in node.items:
            yield from conditions(item)


# -- errors -------------------------------------------------------------------------------------


class CriteriaError(ZohoError):
    """A criteria problem, with Zoho's code (`INVALID_QUERY`, `INVALID_CRITERIA`, ...)."""

    status_code = 400

    def __init__(
        self,
        message: str,
        details: Mapping[str, object] | None = None,
        *,
        code: str = "INVALID_QUERY",
    ) -> None:
        super().__init__(message, **dict(details or {}))
        self.code = code
        self.message = message
        self.details: dict[str, object] = dict(details or {})


# -- field types --------------------------------------------------------------------------------

TEXT_TYPES: Final = frozenset(
    {"text", "textarea", "email", "phone", "website", "picklist", "autonumber"}
)
MULTI_TYPES: Final = frozenset({"multiselectpicklist"})
INT_TYPES: Final = frozenset({"integer", "bigint"})
FLOAT_TYPES: Final = frozenset({"double", "currency", "percent", "decimal"})
BOOL_TYPES: Final = frozenset({"boolean"})
DATE_TYPES: Final = frozenset({"date"})
DATETIME_TYPES: Final = frozenset({"datetime"})
LOOKUP_TYPES: Final = frozenset({"lookup", "ownerlookup", "userlookup"})

SYSTEM_COLUMNS: Final[Mapping[str, str]] = {
    "id": "id",
    "Created_Time": "created_time",
    "Modified_Time": "modified_time",
}
"""Fields kept in columns of `records` rather than in its `data` JSON."""
EPOCH_FIELDS: Final = frozenset({"Created_Time", "Modified_Time"})

_CMP: Final = frozenset({"greater_than", "greater_equal", "less_than", "less_equal"})
_ORDERED_OPS: Final = _CMP | frozenset(
    ["equals", "not_equal", "in", "not_in", "between", "not_between", "is_empty", "is_not_empty"]
)
_TEXT_OPS: Final = frozenset(
    [
        "equals",
        "not_equal",
        "in",
        "not_in",
        "starts_with",
        "ends_with",
        "contains",
        "not_contains",
        "is_empty",
        "is_not_empty",
    ]
)
EVAL_OPS: Final[Mapping[str, frozenset[str]]] = {
    "text": _TEXT_OPS,
    "multi": _TEXT_OPS,
    "number": _ORDERED_OPS,
    "temporal": _ORDERED_OPS,
    "epoch": _ORDERED_OPS,
    "boolean": frozenset({"equals", "not_equal", "is_empty", "is_not_empty"}),
    "lookup": frozenset({"equals", "not_equal", "in", "not_in", "is_empty", "is_not_empty"}),
}
"""Operators `evaluate` and `compile_sql` accept, per category of field."""

_NEGATIONS: Final[Mapping[str, str]] = {
    "not_equal": "equals",
    "not_in": "in",
    "not_contains": "contains",
    "not_between": "between",
    "is_not_empty": "is_empty",
}


def _category(name: str, data_type: str) -> str | None:
    if name in EPOCH_FIELDS:
        return "epoch"
    if data_type in TEXT_TYPES:
        return "text"
    if data_type in MULTI_TYPES:
        return "multi"
    if data_type in INT_TYPES or data_type in FLOAT_TYPES:
        return "number"
    if data_type in BOOL_TYPES:
        return "boolean"
    if data_type in DATE_TYPES or data_type in DATETIME_TYPES:
        return "temporal"
    if data_type in LOOKUP_TYPES:
        return "lookup"
    return None


# Search Records: operators per field type (v7/v8 "search-records" docs, zoho/crm-oas v8.0
# module_search.yaml `criteria` parameter).
_S_NUM: Final = frozenset(
    [
        "equals",
        "not_equal",
        "greater_equal",
        "greater_than",
        "less_equal",
        "less_than",
        "between",
        "in",
    ]
)
SEARCH_OPS: Final[Mapping[str, frozenset[str]]] = {
    **{t: _S_NUM for t in (DATE_TYPES | DATETIME_TYPES | INT_TYPES | FLOAT_TYPES)},
    "boolean": frozenset({"equals", "not_equal"}),
    "textarea": frozenset({"equals", "not_equal", "starts_with"}),
    **{t: frozenset({"equals", "not_equal", "in"}) for t in LOOKUP_TYPES},
    "picklist": frozenset({"equals", "not_equal", "in"}),
    "autonumber": frozenset({"equals", "not_equal", "in"}),
    **{
        t: frozenset({"equals", "not_equal", "starts_with", "in"})
        for t in ("text", "email", "phone", "website")
    },
    "multiselectpicklist": frozenset({"equals", "not_equal", "in", "starts_with"}),
}
_SEARCH_VOCAB: Final = frozenset().union(*SEARCH_OPS.values())
MAX_SEARCH_CONDITIONS: Final = 10
MAX_SEARCH_VALUES: Final = 100

# Bulk Read: comparators per field type (v7 bulk-read/create-job.html "Allowed Comparators").
BULK_COMPARATORS: Final[Mapping[str, str]] = {
    name: "equals" if name == "equal" else name
    for name in [
        "equal",
        "not_equal",
        "in",
        "not_in",
        "less_than",
        "less_equal",
        "greater_than",
        "greater_equal",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "between",
        "not_between",
    ]
}
"""Bulk Read comparator (wire name) -> AST operator."""
_B_NUM: Final = tuple(
    [
        "equal",
        "not_equal",
        "in",
        "not_in",
        "less_than",
        "less_equal",
        "greater_than",
        "greater_equal",
    ]
)
_B_TEXT: Final = tuple(
    ["equal", "not_equal", "in", "not_in", "contains", "not_contains", "starts_with", "ends_with"]
)
_B_TIME: Final = tuple(
    [
        "equal",
        "not_equal",
        "in",
        "not_in",
        "between",
        "not_between",
        "greater_than",
        "greater_equal",
        "less_than",
        "less_equal",
    ]
)
BULK_OPS: Final[Mapping[str, tuple[str, ...]]] = {
    **{t: _B_NUM for t in INT_TYPES | FLOAT_TYPES},
    **{t: _B_TEXT for t in TEXT_TYPES | MULTI_TYPES},
    **{t: _B_TIME for t in DATE_TYPES | DATETIME_TYPES},
    "boolean": ("equal",),
    **{t: ("equal", "not_equal", "in", "not_in") for t in LOOKUP_TYPES},
}
"""Bulk Read comparator names (as sent on the wire) allowed per field type."""
MAX_CRITERIA_DEPTH: Final = 32
"""The most nested groups a criteria may have, in search and in Bulk Read alike (Zoho
publishes no figure); deeper is refused long before Python's recursion limit."""
MAX_BULK_CONDITIONS: Final = 25
MAX_BULK_VALUES: Final = 200
MAX_BULK_TEXT: Final = 255
EMPTY_VALUE: Final = "${EMPTY}"

_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_INT: Final = re.compile(r"[+-]?\d+")
_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_PLUS_AS_SPACE: Final = re.compile(r"(.*[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_T = TypeVar("_T", str, float)
_INT64: Final = 2**63


# -- value conversion ---------------------------------------------------------------------------


class _BadValue(Exception):
    """A criteria value that does not fit the field's type."""


def _to_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise _BadValue
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and len(raw.strip()) <= 21 and _INT.fullmatch(raw.strip()):
        value = int(raw.strip())
    else:
        raise _BadValue
    if not -_INT64 <= value < _INT64:
        raise _BadValue
    return value


def _to_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise _BadValue
    if isinstance(raw, int) and not -_INT64 <= raw < _INT64:
        raise _BadValue
    if isinstance(raw, int | float):
        text = repr(raw)
    elif isinstance(raw, str) and len(raw) <= 400 and _NUMBER.fullmatch(raw.strip()):
        text = raw.strip()
    else:
        raise _BadValue
    try:
        number = Decimal(text)
        value = float(number)
    except (InvalidOperation, ValueError, OverflowError):
        raise _BadValue from None
    if not number.is_finite() or value in (float("inf"), float("-inf")):
        raise _BadValue
    return value


def _to_datetime(raw: object, *, bulk: bool) -> str:
    if not isinstance(raw, str):
        raise _BadValue
    text = raw.strip()
    if bulk and "." in text:
        raise _BadValue  # Bulk Read rejects milliseconds
    if not bulk:
        # an unencoded `+05:30` arrives as ` 05:30` after URL decoding
        spaced = _PLUS_AS_SPACE.fullmatch(text)
        if spaced:
            text = f"{spaced.group(1)}+{spaced.group(2)}"
    try:
        moment = clock.parse_datetime(text)
        if moment.microsecond:
            raise _BadValue  # stored values have whole seconds
        return clock.utc_text(moment)
    except (ValueError, OverflowError):
        raise _BadValue from None


def _to_date(raw: object) -> str:
    if not isinstance(raw, str) or not _DATE.fullmatch(raw.strip()):
        raise _BadValue
    try:
        return date.fromisoformat(raw.strip()).isoformat()
    except ValueError:
        raise _BadValue from None


def _to_lookup(raw: object) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 0 < raw < _INT64:
            raise _BadValue
        raw = str(raw)
    if not isinstance(raw, str) or not clock.is_record_id(raw.strip()):
        raise _BadValue
    return str(int(raw.strip()))


def _to_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise _BadValue


def _to_text(raw: object, *, bulk: bool) -> str:
    if bulk and isinstance(raw, int) and not isinstance(raw, bool):
        if not -_INT64 <= raw < _INT64:
            raise _BadValue
        raw = str(raw)
    if not isinstance(raw, str) or raw == "":
        raise _BadValue
    if bulk and len(raw) > MAX_BULK_TEXT:
        raise _BadValue
    return raw


def _convert(data_type: str, raw: object, *, bulk: bool) -> object:
    """A criteria value in normalised form; raises _BadValue."""
    if data_type in TEXT_TYPES or data_type in MULTI_TYPES:
        return _to_text(raw, bulk=bulk)
    if data_type in INT_TYPES:
        return _to_int(raw)
    if data_type in FLOAT_TYPES:
        return _to_float(raw)
    if data_type in BOOL_TYPES:
        return _to_bool(raw)
    if data_type in DATE_TYPES:
        return _to_date(raw)
    if data_type in DATETIME_TYPES:
        return _to_datetime(raw, bulk=bulk)
    if data_type in LOOKUP_TYPES:
        return _to_lookup(raw)
    raise _BadValue


# -- Search Records syntax ----------------------------------------------------------------------

_JOIN: Final = re.compile(r"(?i)(and|or)(?=[\s(])")
_ESCAPABLE: Final = "(),\\"


def parse_search(
    text: str,
    fields: Mapping[str, str],
    *,
    max_conditions: int = MAX_SEARCH_CONDITIONS,
    max_values: int = MAX_SEARCH_VALUES,
) -> Node:
    """Parse the `criteria` parameter of Search Records (already URL-decoded).

    Grammar: `expr := term (("and"|"or") term)*`, `term := "(" (expr | condition) ")"`,
    `condition := api_name ":" operator ":" value`; a bare condition without parentheses is
    accepted on its own. `and` binds tighter than `or`; keywords are case-insensitive. In a
    value, `\\(`, `\\)`, `\\,` and `\\\\` stand for the character itself; `in` and `between`
    take comma-separated values. Raises CriteriaError: code INVALID_QUERY (details `reason`,
    plus `api_name`, `operator`, `expected_data_type`, `value` where they apply) or
    CRITERIA_LIMIT_EXCEEDED (more than `max_conditions` conditions).

    Zoho documents that `equals` on text "behaves like contains" (a word match in its search
    index); here `equals` is an exact, case-insensitive comparison.
    """
    return _SearchParser(text, fields, max_conditions, max_values).parse()


def _syntax(reason: str) -> CriteriaError:
    return CriteriaError("invalid query formed", {"reason": reason})


class _SearchParser:
    def __init__(
        self, text: str, fields: Mapping[str, str], max_conditions: int, max_values: int
    ) -> None:
        self.s = text if isinstance(text, str) else ""
        self.n = len(self.s)
        self.i = 0
        self.fields = fields
        self.max_conditions = max_conditions
        self.max_values = max_values
        self.count = 0

    def parse(self) -> Node:
        self.ws()
        if self.i >= self.n:
            raise _syntax("the criteria is empty")
        node = self.expr(0) if self.s[self.i] == "(" else self.condition(bare=True)
        self.ws()
        if self.i < self.n:
            raise _syntax(f"unexpected character at position {self.i}")
        return node

    def ws(self) -> None:
        while self.i < self.n and self.s[self.i].isspace():
            self.i += 1

    def expr(self, depth: int) -> Node:
        terms = [self.term(depth)]
        ops: list[str] = []
        while True:
            mark = self.i
            self.ws()
            found = _JOIN.match(self.s, self.i)
            if found is None:
                self.i = mark
                break
            self.i = found.end()
            self.ws()
            if self.i >= self.n or self.s[self.i] != "(":
                raise _syntax(f"expected ( after {found.group(1)} at position {self.i}")
            ops.append(found.group(1).lower())
            terms.append(self.term(depth))
        return _combine(terms, ops)

    def term(self, depth: int) -> Node:
        if depth >= MAX_CRITERIA_DEPTH:
            raise _syntax("the criteria is nested too deeply")
        self.i += 1  # the "("
        self.ws()
        if self.i < self.n and self.s[self.i] == "(":
            node = self.expr(depth + 1)
            self.ws()
            if self.i >= self.n or self.s[self.i] != ")":
                raise _syntax(f"expected ) at position {self.i}")
            self.i += 1
            return node
        return self.condition(bare=False)

    def segment(self, what: str) -> str:
        start = self.i
        while self.i < self.n and self.s[self.i] not in ":()":
            self.i += 1
        if self.i >= self.n or self.s[self.i] != ":":
            raise _syntax(f"expected {what} followed by : at position {start}")
        self.i += 1
        return self.s[start : self.i - 1].strip()

    def condition(self, *, bare: bool) -> Condition:
        field = self.segment("a field API name")
        op = self.segment("an operator").lower()
        chars: list[tuple[str, bool]] = []
        closed = False
        while self.i < self.n:
            c = self.s[self.i]
            if c == "\\" and self.i + 1 < self.n and self.s[self.i + 1] in _ESCAPABLE:
                chars.append((self.s[self.i + 1], True))
                self.i += 2
                continue
            if c == ")":
                if bare:
                    raise _syntax(f"unbalanced ) at position {self.i}")
                self.i += 1
                closed = True
                break
            if c == "(":
                raise _syntax(f"unescaped ( in the value at position {self.i}")
            chars.append((c, False))
            self.i += 1
        if not bare and not closed:
            raise _syntax("expected ) at the end of the criteria")
        return self.make(field, op, chars)

    def make(self, field: str, op: str, chars: list[tuple[str, bool]]) -> Condition:
        self.count += 1
        if self.count > self.max_conditions:
            raise CriteriaError(
                f"no of criterium that can be given exceed the limit {self.max_conditions}",
                {},
                code="CRITERIA_LIMIT_EXCEEDED",
            )
        data_type = self.fields.get(field) if _NAME.fullmatch(field) else None
        allowed = SEARCH_OPS.get(data_type or "")
        if data_type is None or allowed is None or _category(field, data_type) is None:
            reason = "the field is not available for search"
            raise CriteriaError(reason, {"reason": reason, "api_name": field})
        if op not in allowed:
            reason = (
                "The operator is not valid for the field type"
                if op in _SEARCH_VOCAB
                else "invalid operator found"
            )
            raise CriteriaError(
                "invalid operator found", {"operator": op, "reason": reason, "api_name": field}
            )
        pieces = _split(chars) if op in ("in", "between") else [chars]
        raws = ["".join(c for c, _ in piece).strip() for piece in pieces]
        if op == "in" and len(raws) > self.max_values:
            raise CriteriaError(
                f'Only {self.max_values} values are allowed in "IN" criteria', {"api_name": field}
            )
        values: list[object] = []
        for raw in raws:
            try:
                if op == "between" and len(raws) != 2:
                    raise _BadValue
                values.append(_convert(data_type, raw, bulk=False))
            except _BadValue:
                raise CriteriaError(
                    "invalid query formed",
                    {
                        "expected_data_type": data_type,
                        "reason": "invalid value for search",
                        "api_name": field,
                        "value": _echo(raw),
                    },
                ) from None
        return Condition(field, op, tuple(values), data_type)


def _split(chars: list[tuple[str, bool]]) -> list[list[tuple[str, bool]]]:
    out: list[list[tuple[str, bool]]] = [[]]
    for c, escaped in chars:
        if c == "," and not escaped:
            out.append([])
        else:
            out[-1].append((c, escaped))
    return out


def _combine(terms: list[Node], ops: list[str]) -> Node:
    chains: list[list[Node]] = [[terms[0]]]
    for op, term in zip(ops, terms[1:], strict=True):
        if op == "and":
            chains[-1].append(term)
        else:
            chains.append([term])
    ands = [c[0] if len(c) == 1 else Group("and", tuple(c)) for c in chains]
    return ands[0] if len(ands) == 1 else Group("or", tuple(ands))


# -- Bulk Read JSON -----------------------------------------------------------------------------

_GROUP_KEYS: Final = frozenset({"group", "group_operator"})
_LEAF_KEYS: Final = frozenset({"field", "api_name", "comparator", "value"})


def parse_bulk(
    obj: object,
    fields: Mapping[str, str],
    *,
    max_conditions: int = MAX_BULK_CONDITIONS,
    max_values: int = MAX_BULK_VALUES,
    path: str = "$.query.criteria",
) -> Node:
    """Parse the `query.criteria` object of a Bulk Read job. Raises CriteriaError.

    Leaves are `{"field": {"api_name": F}, "comparator": C, "value": V}` (or the older
    `{"api_name": F, ...}`); groups are `{"group_operator": "and"|"or", "group": [...]}` with at
    least two members. `"${EMPTY}"` with `equal` / `not_equal` becomes is_empty /
    is_not_empty. Error codes and messages follow Zoho's (zoho/crm-oas v8.0 bulk_read.yaml,
    zohocrmsdk2-0 `bulk_read.APIException`); details carry `api_name` and `json_path`.
    """
    return _BulkParser(fields, max_conditions, max_values).node(obj, path, 0)


class _BulkParser:
    def __init__(self, fields: Mapping[str, str], max_conditions: int, max_values: int) -> None:
        self.fields = fields
        self.max_conditions = max_conditions
        self.max_values = max_values
        self.count = 0

    def node(self, obj: object, path: str, depth: int) -> Node:
        if not isinstance(obj, Mapping):
            raise CriteriaError(
                f"Invalid criteria {path} for the query.",
                {"json_path": path},
                code="INVALID_CRITERIA",
            )
        keys = set(obj)
        if keys & _GROUP_KEYS and keys & _LEAF_KEYS:
            raise CriteriaError(
                f"Ambiguous criteria {path}. Criteria can have either {{group, group_operator}}"
                " or {api_name, comparator, value}.",
                {"json_path": path},
                code="AMBIGUOUS_CRITERIA",
            )
        if keys & _GROUP_KEYS:
            return self.group(obj, path, depth)
        if keys & _LEAF_KEYS:
            return self.leaf(obj, path)
        raise CriteriaError(
            f"Invalid criteria {path} for the query.", {"json_path": path}, code="INVALID_CRITERIA"
        )

    def group(self, obj: Mapping[object, object], path: str, depth: int) -> Node:
        if depth >= MAX_CRITERIA_DEPTH:
            raise CriteriaError(
                f"Criteria {path} is nested too deeply: at most {MAX_CRITERIA_DEPTH} levels of"
                " groups are supported.",
                {"json_path": path, "limit": MAX_CRITERIA_DEPTH},
                code="INVALID_CRITERIA",
            )
        items = obj.get("group")
        op = obj.get("group_operator")
        if not isinstance(items, list):
            raise CriteriaError(
                f"Invalid criteria {path} for the query.",
                {"json_path": f"{path}.group"},
                code="INVALID_CRITERIA",
            )
        if op is None or len(items) < 2:
            raise CriteriaError(
                f"Ambiguous group in criteria {path}. Group should be used only when there are"
                " more than one criteria",
                {"json_path": path},
                code="AMBIGUOUS_GROUP_IN_CRITERIA",
            )
        if not isinstance(op, str) or op.lower() not in ("and", "or"):
            raise CriteriaError(
                f"Criteria {path} doesn't support this logical group operator '{op}'. Supported"
                " operators are 'and', 'or'.",
                {"supported": ["and", "or"], "json_path": f"{path}.group_operator"},
                code="GROUP_OPERATOR_NOT_SUPPORTED",
            )
        children = tuple(
            self.node(item, f"{path}.group[{k}]", depth + 1) for k, item in enumerate(items)
        )
        return Group("and" if op.lower() == "and" else "or", children)

    def leaf(self, obj: Mapping[object, object], path: str) -> Condition:
        field = obj.get("field")
        name = field.get("api_name") if isinstance(field, Mapping) else obj.get("api_name")
        comparator = obj.get("comparator")
        kind = obj.get("type", "value")
        if not isinstance(name, str) or not isinstance(comparator, str) or "value" not in obj:
            raise CriteriaError(
                f"Invalid criteria {path} for the query.",
                {"json_path": path},
                code="INVALID_CRITERIA",
            )
        if kind != "value":
            raise CriteriaError(
                f"Invalid criteria for the query. Criteria {path} is not supported.",
                {"api_name": name, "json_path": f"{path}.type"},
                code="CRITERIA_NOT_SUPPORTED",
            )
        self.count += 1
        if self.count > self.max_conditions:
            raise CriteriaError(
                f"Number of criteria exceeded the maximum limit of {self.max_conditions}",
                {"max_limit": self.max_conditions},
                code="CRITERIA_LIMIT_EXCEEDED",
            )
        data_type = self.fields.get(name) if _NAME.fullmatch(name) else None
        if data_type is None and "." not in name:
            raise CriteriaError(
                f"Field api name '{name}' is not available for criteria {path}. Check"
                " visibility and permission for the field",
                {"api_name": name, "json_path": path},
                code="FIELD_IN_CRITERIA_NOT_AVAILABLE",
            )
        allowed = BULK_OPS.get(data_type or "")
        if data_type is None or allowed is None or _category(name, data_type) is None:
            raise CriteriaError(
                f"Field api name '{name}' for criteria {path} is not supported.",
                {"api_name": name, "json_path": path},
                code="FIELD_IN_CRITERIA_NOT_SUPPORTED",
            )
        if comparator not in allowed:
            raise CriteriaError(
                f"Field api name '{name}' doesn't support this comparator '{comparator}' for"
                f" criteria {path}.",
                {
                    "api_name": name,
                    "comparator": comparator,
                    "supported": list(allowed),
                    "json_path": f"{path}.comparator",
                },
                code="FIELD_COMPARATOR_IN_CRITERIA_NOT_SUPPORTED",
            )
        op = BULK_COMPARATORS[comparator]
        return self.values(name, data_type, comparator, op, obj["value"], path)

    def values(
        self, name: str, data_type: str, comparator: str, op: str, raw: object, path: str
    ) -> Condition:
        details: dict[str, object] = {
            "api_name": name,
            "comparator": comparator,
            "value": _echo(raw),
            "json_path": f"{path}.value",
        }

        def incompatible() -> CriteriaError:
            return CriteriaError(
                f"Comparator '{comparator}' is not supported with value '{_show(raw)}' for"
                f" criteria {path}.",
                details,
                code="COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE",
            )

        if raw is None:
            raise CriteriaError(
                f"Value '{_show(raw)}' is not supported for criteria {path}.",
                details,
                code="VALUE_IN_CRITERIA_NOT_SUPPORTED",
            )
        if raw == EMPTY_VALUE and data_type not in BOOL_TYPES:
            if op == "equals":
                return Condition(name, "is_empty", (), data_type)
            if op == "not_equal":
                return Condition(name, "is_not_empty", (), data_type)
            raise incompatible()
        if op in ("in", "not_in", "between", "not_between"):
            if not isinstance(raw, list) or not raw:
                raise incompatible()
            if op in ("between", "not_between") and len(raw) != 2:
                raise incompatible()
            if len(raw) > self.max_values:
                raise CriteriaError(
                    f"Value exceeded limit {self.max_values}",
                    {"max_limit": self.max_values, "api_name": name, "json_path": f"{path}.value"},
                    code="VALUE_LIMIT_EXCEEDED_IN_CRITERIA",
                )
            items: list[object] = list(raw)
        elif isinstance(raw, list | Mapping):
            raise incompatible()
        else:
            items = [raw]
        out: list[object] = []
        for item in items:
            if item == EMPTY_VALUE and data_type not in BOOL_TYPES:
                raise incompatible()
            try:
                out.append(_convert(data_type, item, bulk=True))
            except _BadValue:
                raise CriteriaError(
                    f"Field '{name}' is not supported with value '{_show(item)}' for criteria"
                    f" {path}.",
                    details,
                    code="FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE",
                ) from None
        return Condition(name, op, tuple(out), data_type)


def _show(value: object) -> str:
    """A value for a message: compact JSON, at most 100 characters."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    except (ValueError, TypeError, RecursionError):
        text = "<unprintable>"
    return text if len(text) <= 100 else text[:97] + "..."


def _echo(value: object, depth: int = 0) -> object:
    """A criteria value as given, made safe to echo in error details (JSON, 64-bit ints)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value if len(value) <= 1000 else value[:1000]
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else _show(value)
    if isinstance(value, float):
        return value if value - value == 0 else _show(value)
    if isinstance(value, list) and depth == 0:
        return [_echo(item, 1) for item in value[:MAX_BULK_VALUES]]
    return _show(value)


# -- shared by evaluate and compile_sql ---------------------------------------------------------

_ASCII_LOWER: Final = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _fold(text: str) -> str:
    """ASCII-only lower case, as SQLite's lower() and PostgreSQL's lower(x COLLATE "C")."""
    return text.translate(_ASCII_LOWER)


def _bad_node(cond: Condition, reason: str) -> CriteriaError:
    return CriteriaError(
        "invalid query formed", {"reason": reason, "api_name": cond.field, "operator": cond.op}
    )


def _arity_ok(op: str, count: int) -> bool:
    if op in ("is_empty", "is_not_empty"):
        return count == 0
    if op in ("between", "not_between"):
        return count == 2
    if op in ("in", "not_in"):
        return count >= 1
    return count == 1


def _seconds(value: object) -> int:
    """Whole seconds since the epoch of a datetime criteria value."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = clock.parse_datetime(value)
    else:
        raise _BadValue
    if moment.tzinfo is None:
        raise _BadValue
    return (moment - _EPOCH) // timedelta(seconds=1)


def _prepare(cond: Condition, category: str) -> tuple[object, ...]:
    """Condition values as compared: folded text, ids, numbers, epoch seconds."""
    if category not in EVAL_OPS or cond.op not in EVAL_OPS[category]:
        raise _bad_node(cond, "The operator is not valid for the field type")
    if not _arity_ok(cond.op, len(cond.values)):
        raise _bad_node(cond, "wrong number of values for the operator")
    out: list[object] = []
    for v in cond.values:
        try:
            if category in ("text", "multi"):
                if not isinstance(v, str):
                    raise _BadValue
                out.append(_fold(v))
            elif category == "number":
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise _BadValue
                out.append(v)
            elif category == "temporal":
                if not isinstance(v, str):
                    raise _BadValue
                out.append(v)
            elif category == "epoch":
                out.append(_seconds(v))
            elif category == "boolean":
                if not isinstance(v, bool):
                    raise _BadValue
                out.append(v)
            else:
                out.append(_to_lookup(v))
        except (_BadValue, ValueError, OverflowError):
            raise _bad_node(cond, "invalid value for the field type") from None
    return tuple(out)


def _split_op(op: str) -> tuple[str, bool]:
    positive = _NEGATIONS.get(op)
    return (positive, True) if positive else (op, False)


# -- evaluate -----------------------------------------------------------------------------------


def evaluate(
    node: Node, record: Mapping[str, object], fields: Mapping[str, str] | None = None
) -> bool:
    """Whether a record in stored form satisfies the criteria.

    `record` maps `id` (int), `Created_Time` / `Modified_Time` (epoch ms) and the other fields
    in stored form. Field types come from each condition's `data_type`, else from `fields`,
    else they are guessed from the stored value.
    """
    if isinstance(node, Group):
        if node.op == "and":
            return all(evaluate(item, record, fields) for item in node.items)
        return any(evaluate(item, record, fields) for item in node.items)
    raw = record.get(node.field)
    data_type = node.data_type or (fields or {}).get(node.field) or _guess(raw)
    category = _category(node.field, data_type)
    if category is None:
        raise _bad_node(node, "the field is not available for search")
    values = _prepare(node, category)
    op, negated = _split_op(node.op)
    return _match(category, op, values, raw) != negated


def _guess(raw: object) -> str:
    if isinstance(raw, bool):
        return "boolean"
    if isinstance(raw, int | float):
        return "double"
    if isinstance(raw, list):
        return "multiselectpicklist"
    if isinstance(raw, Mapping):
        return "lookup"
    return "text"


def _scalar(category: str, raw: object) -> object:
    """The stored value as compared, or None when missing or of the wrong JSON type."""
    if category in ("text", "temporal"):
        return raw if isinstance(raw, str) else None
    if category in ("number", "epoch"):
        return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if category == "boolean":
        return raw if isinstance(raw, bool) else None
    if isinstance(raw, Mapping):  # lookup
        ident = raw.get("id")
        return ident if isinstance(ident, str) else None
    return None


def _match(category: str, op: str, values: tuple[object, ...], raw: object) -> bool:
    if category == "multi":
        if op == "is_empty":
            return not isinstance(raw, list) or not raw
        items = [_fold(x) for x in raw if isinstance(x, str)] if isinstance(raw, list) else []
        return any(_match_text(op, values, item) for item in items)
    value = _scalar(category, raw)
    if op == "is_empty":
        return value is None or value == ""
    if value is None:
        return False
    if category == "text":
        assert isinstance(value, str)
        return _match_text(op, values, _fold(value))
    if category == "epoch":
        assert isinstance(value, int | float)
        return _match_epoch(op, values, value)
    return _match_ordered(op, values, value)


def _match_text(op: str, values: tuple[object, ...], text: str) -> bool:
    if op == "equals":
        return text == values[0]
    if op == "in":
        return text in values
    needle = values[0]
    assert isinstance(needle, str)
    if op == "starts_with":
        return text.startswith(needle)
    if op == "ends_with":
        return text.endswith(needle)
    return needle in text  # contains


def _match_ordered(op: str, values: tuple[object, ...], value: object) -> bool:
    v: object = value
    if op == "equals":
        return bool(v == values[0])
    if op == "in":
        return any(v == x for x in values)
    lo, hi = values[0], values[-1]
    if isinstance(v, str) and isinstance(lo, str) and isinstance(hi, str):
        return _ordered(op, v, lo, hi)
    if isinstance(v, int | float) and isinstance(lo, int | float) and isinstance(hi, int | float):
        return _ordered(op, v, lo, hi)
    return False


def _ordered(op: str, v: _T, lo: _T, hi: _T) -> bool:
    if op == "greater_than":
        return v > lo
    if op == "greater_equal":
        return v >= lo
    if op == "less_than":
        return v < lo
    if op == "less_equal":
        return v <= lo
    return lo <= v <= hi  # between


def _match_epoch(op: str, values: tuple[object, ...], ms: float) -> bool:
    secs = [int(x) for x in values if isinstance(x, int)]
    return any(
        (lo is None or lo <= ms) and (hi is None or ms < hi) for lo, hi in _epoch_ranges(op, secs)
    )


def _epoch_ranges(op: str, secs: Sequence[int]) -> list[tuple[int | None, int | None]]:
    """Half-open epoch-ms ranges [lo, hi) an epoch criterion matches (None: unbounded)."""
    if op == "equals":
        return [(secs[0] * 1000, (secs[0] + 1) * 1000)]
    if op == "in":
        return [(s * 1000, (s + 1) * 1000) for s in secs]
    if op == "greater_than":
        return [((secs[0] + 1) * 1000, None)]
    if op == "greater_equal":
        return [(secs[0] * 1000, None)]
    if op == "less_than":
        return [(None, secs[0] * 1000)]
    if op == "less_equal":
        return [(None, (secs[0] + 1) * 1000)]
    return [(secs[0] * 1000, (secs[1] + 1) * 1000)]  # between


# -- compile_sql --------------------------------------------------------------------------------

Dialect: TypeAlias = Literal["sqlite", "postgres"]


def compile_sql(
    node: Node,
    dialect: Dialect,
    fields: Mapping[str, str],
    *,
    param_start: int = 1,
    table: str | None = None,
) -> tuple[str, list[object]]:
    """A boolean SQL expression over table `records`, and its parameters.

    Placeholders are numbered from `param_start`: `?N` for SQLite, `$N` for PostgreSQL (with a
    cast, e.g. `$3::text`). Columns are unqualified unless `table` names an alias. Only API
    names present in `fields` (and matching `^[A-Za-z][A-Za-z0-9_]*$`) reach the SQL text;
    every value travels as a parameter. Field types come from `fields`. Matches exactly the
    records `evaluate` accepts (see the module docstring for the semantics).
    """
    if dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unknown SQL dialect {dialect!r}")
    if table is not None and not _NAME.fullmatch(table):
        raise ValueError(f"invalid table alias {table!r}")
    compiler = _Compiler(dialect == "postgres", fields, param_start, table)
    return compiler.node(node), compiler.params


_LIKE_SPECIAL: Final = str.maketrans({"\\": "\\\\", "%": "\\%", "_": "\\_"})
_LIKE_PATTERNS: Final[Mapping[str, str]] = {
    "starts_with": "{}%",
    "ends_with": "%{}",
    "contains": "%{}%",
}
_SQL_CMP: Final[Mapping[str, str]] = {
    "greater_than": ">",
    "greater_equal": ">=",
    "less_than": "<",
    "less_equal": "<=",
}


class _Compiler:
    def __init__(self, pg: bool, fields: Mapping[str, str], start: int, table: str | None) -> None:
        self.pg = pg
        self.fields = fields
        self.start = start
        self.prefix = f"{table}." if table else ""
        self.data = f"{self.prefix}data"
        self.params: list[object] = []

    # placeholders and helpers

    def ph(self, value: object, cast: str) -> str:
        self.params.append(value)
        number = self.start + len(self.params) - 1
        return f"${number}::{cast}" if self.pg else f"?{number}"

    def safe(self, expr: str) -> str:
        """`expr`, with SQL NULL read as false."""
        return f"COALESCE({expr}, {'FALSE' if self.pg else '0'})"

    def jpath(self, name: str, suffix: str = "") -> str:
        return f"'$.\"{name}\"{suffix}'"  # name is validated: [A-Za-z][A-Za-z0-9_]*

    def jsonb(self, name: str) -> str:
        return f"({self.data}->'{name}')"

    def num_param(self, value: object, system: bool) -> str:
        if not self.pg:
            return self.ph(value, "")
        if system:
            return self.ph(value, "bigint")
        return self.ph(
            Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value)), "numeric"
        )

    # tree

    def node(self, node: Node) -> str:
        if isinstance(node, Group):
            if not node.items:
                return "(1 = 1)" if node.op == "and" else "(1 = 0)"
            joiner = " AND " if node.op == "and" else " OR "
            return "(" + joiner.join(self.node(item) for item in node.items) + ")"
        return self.leaf(node)

    def leaf(self, cond: Condition) -> str:
        name = cond.field
        data_type = self.fields.get(name) if _NAME.fullmatch(name) else None
        category = _category(name, data_type) if data_type is not None else None
        if category is None:
            reason = "the field is not available for search"
            raise CriteriaError(reason, {"reason": reason, "api_name": name})
        values = _prepare(cond, category)
        op, negated = _split_op(cond.op)
        if category == "multi":
            expr = self.multi(name, op, values)
        elif category == "boolean":
            expr = self.boolean(name, op, values)
        elif category == "epoch" and op != "is_empty":
            expr = self.epoch(name, op, values)
        else:
            expr = self.scalar(name, category, op, values)
        return f"(NOT {expr})" if negated else expr

    # categories

    def accessor(self, name: str, category: str) -> str:
        """The stored value, or NULL when missing or of the wrong JSON type."""
        if name in SYSTEM_COLUMNS:
            return self.prefix + SYSTEM_COLUMNS[name]
        d = self.data
        if self.pg:
            j = self.jsonb(name)
            if category == "number":
                return (
                    f"(CASE WHEN jsonb_typeof({j}) = 'number' THEN ({d}->>'{name}')::numeric END)"
                )
            if category == "lookup":
                return f"(CASE WHEN jsonb_typeof({j}->'id') = 'string' THEN {j}->>'id' END)"
            return f"(CASE WHEN jsonb_typeof({j}) = 'string' THEN {d}->>'{name}' END)"
        if category == "number":
            p = self.jpath(name)
            return (
                f"(CASE WHEN json_type({d}, {p}) IN ('integer', 'real') "
                f"THEN json_extract({d}, {p}) END)"
            )
        p = self.jpath(name, ".id" if category == "lookup" else "")
        return f"(CASE WHEN json_type({d}, {p}) = 'text' THEN json_extract({d}, {p}) END)"

    def scalar(self, name: str, category: str, op: str, values: tuple[object, ...]) -> str:
        value = self.accessor(name, category)
        if op == "is_empty":
            if category in ("number", "epoch"):
                return f"({value} IS NULL)"
            return f"(COALESCE({value}, '') = '')"
        if category == "text":
            left = f'lower({value} COLLATE "C")' if self.pg else f"lower({value})"
            return self.safe(self.text_pred(op, left, values))
        if self.pg and category != "number":
            value = f'({value} COLLATE "C")'
        system = name in SYSTEM_COLUMNS

        def param(v: object) -> str:
            return self.num_param(v, system) if category == "number" else self.ph(v, "text")

        if op == "equals":
            return self.safe(f"{value} = {param(values[0])}")
        if op == "in":
            return self.safe(f"{value} IN ({', '.join(param(v) for v in values)})")
        if op == "between":
            lo = param(values[0])
            return self.safe(f"{value} BETWEEN {lo} AND {param(values[1])}")
        return self.safe(f"{value} {_SQL_CMP[op]} {param(values[0])}")

    def text_pred(self, op: str, left: str, values: tuple[object, ...]) -> str:
        if op == "equals":
            return f"{left} = {self.ph(values[0], 'text')}"
        if op == "in":
            return f"{left} IN ({', '.join(self.ph(v, 'text') for v in values)})"
        needle = str(values[0]).translate(_LIKE_SPECIAL)
        pattern = _LIKE_PATTERNS[op].format(needle)
        return f"{left} LIKE {self.ph(pattern, 'text')} ESCAPE '\\'"

    def multi(self, name: str, op: str, values: tuple[object, ...]) -> str:
        d = self.data
        if self.pg:
            j = self.jsonb(name)
            array = f"CASE WHEN jsonb_typeof({j}) = 'array' THEN {j} END"
            if op == "is_empty":
                return f"(COALESCE(jsonb_array_length({array}), 0) = 0)"
            pred = self.text_pred(op, "lower((je.v #>> '{}') COLLATE \"C\")", values)
            return (
                f"EXISTS (SELECT 1 FROM jsonb_array_elements({array}) AS je(v) "
                f"WHERE jsonb_typeof(je.v) = 'string' AND {pred})"
            )
        p = self.jpath(name)
        if op == "is_empty":
            return f"(COALESCE(json_array_length({d}, {p}), 0) = 0)"
        pred = self.text_pred(op, "lower(je.value)", values)
        return self.safe(
            f"json_type({d}, {p}) = 'array' AND EXISTS (SELECT 1 FROM "
            f"json_each({d}, {p}) AS je WHERE je.type = 'text' AND {pred})"
        )

    def boolean(self, name: str, op: str, values: tuple[object, ...]) -> str:
        if self.pg:
            j = self.jsonb(name)
            if op == "is_empty":
                return f"(COALESCE(jsonb_typeof({j}), 'null') <> 'boolean')"
            value = f"(CASE WHEN jsonb_typeof({j}) = 'boolean' THEN {j}::boolean END)"
            return self.safe(f"{value} = {self.ph(bool(values[0]), 'boolean')}")
        kind = f"json_type({self.data}, {self.jpath(name)})"
        if op == "is_empty":
            return f"(COALESCE({kind}, 'null') NOT IN ('true', 'false'))"
        return self.safe(f"{kind} = {self.ph('true' if values[0] else 'false', '')}")

    def epoch(self, name: str, op: str, values: tuple[object, ...]) -> str:
        column = self.prefix + SYSTEM_COLUMNS[name]
        secs = [int(v) for v in values if isinstance(v, int)]
        parts = []
        for lo, hi in _epoch_ranges(op, secs):
            bounds = []
            if lo is not None:
                bounds.append(f"{column} >= {self.ph(lo, 'bigint')}")
            if hi is not None:
                bounds.append(f"{column} < {self.ph(hi, 'bigint')}")
            parts.append("(" + " AND ".join(bounds) + ")")
        return self.safe("(" + " OR ".join(parts) + ")")
