"""Record input validation and output shaping, per field type. Pure: no I/O.

Stored form (the `data` JSON of a record): text-like and picklist values as strings,
numbers as numbers, booleans, dates `YYYY-MM-DD`, date-times in UTC `...+00:00`,
multi-select picklists as lists, lookups as `{"id": "...", "name": "..."}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from crmwatch.domain import clock
from crmwatch.domain.errors import InvalidData, MandatoryNotFound, ZohoError
from crmwatch.domain.modules import LOOKUP_TYPES, Field, Module

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_RECORDS = 100


@dataclass(frozen=True, slots=True)
class RecordInput:
    """One record of a write request, checked and normalised."""

    index: int
    values: dict[str, Any]
    """Field values in stored form; lookups still `{"id": ...}` without a name."""
    id: int | None = None
    subforms: Mapping[str, list[RecordInput]] | None = None
    path: str = ""
    """Where the record is in the request body (`$.data[0]`, `$.data[0].Quoted_Items[2]`),
    for the json_path of its errors; empty: `$.data[index]`."""

    def at(self, key: str) -> str:
        """The json_path of one of the record's keys."""
        return f"{self.path or f'$.data[{self.index}]'}.{key}"


def _expected(f: Field, path: str, expected: str) -> ZohoError:
    return InvalidData("invalid data", api_name=f.api_name, json_path=path,
                       expected_data_type=expected)


def _number(f: Field, value: Any, path: str) -> Any:
    if isinstance(value, bool):
        raise _expected(f, path, f.data_type)
    max_digits = 9 if f.data_type == "integer" else 18
    too_long = InvalidData("invalid data", api_name=f.api_name, json_path=path,
                           maximum_length=f.length)
    if f.data_type in ("integer", "bigint"):
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            if len(value.strip().lstrip("-")) > max_digits:
                raise too_long
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise _expected(f, path, f.data_type)
        if len(str(abs(value))) > max_digits:
            raise too_long
        if f.data_type == "integer" and not -(2**31) <= value < 2**31:
            raise _expected(f, path, f.data_type)
        return value
    try:
        num = Decimal(str(value).strip()) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        num = None
    if num is None or not num.is_finite():
        raise _expected(f, path, f.data_type)
    digits = max(num.adjusted() + 1, 1)  # no int(): 1e300000 would take seconds
    if digits > (5 if f.data_type == "percent" else 16):
        raise too_long
    out = float(num)
    if not math.isfinite(out):
        raise _expected(f, path, f.data_type)
    return out


def _lookup_id(f: Field, value: Any, path: str) -> dict[str, str]:
    raw = value.get("id") if isinstance(value, Mapping) else value
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not clock.is_record_id(raw):
        raise _expected(f, path, "jsonobject")
    return {"id": str(int(raw))}


def convert(f: Field, value: Any, path: str) -> Any:
    """One input value in stored form; raises InvalidData for a wrong type or size.

    A checkbox has no empty state in Zoho: null clears it to false."""
    if value is None:
        return False if f.data_type == "boolean" else None
    t = f.data_type
    if t in ("text", "textarea", "email", "phone", "website", "picklist", "autonumber"):
        if isinstance(value, int | float) and not isinstance(value, bool) and t != "email":
            value = str(value)
        if not isinstance(value, str):
            raise _expected(f, path, "string")
        if len(value) > f.length:
            raise InvalidData("invalid data", api_name=f.api_name, json_path=path,
                              maximum_length=f.length)
        if t == "email" and value and not EMAIL.match(value):
            raise InvalidData("invalid email", api_name=f.api_name, json_path=path)
        return value
    if t in ("integer", "bigint", "double", "currency", "percent"):
        return _number(f, value, path)
    if t == "boolean":
        if not isinstance(value, bool):
            raise _expected(f, path, "boolean")
        return value
    if t == "date":
        try:
            return clock.parse_date(value).isoformat()
        except ValueError:
            raise _expected(f, path, "date") from None
    if t == "datetime":
        try:
            return clock.utc_text(clock.parse_datetime(value))
        except (ValueError, TypeError, OverflowError):
            raise _expected(f, path, "datetime") from None
    if t == "multiselectpicklist":
        if isinstance(value, str):
            value = [v for v in value.split(";") if v]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _expected(f, path, "jsonarray")
        return list(dict.fromkeys(value))
    if t in LOOKUP_TYPES:
        return _lookup_id(f, value, path)
    raise _expected(f, path, t)


def parse_input(module: Module, raw: Any, index: int, *, creating: bool,
                modules: Mapping[str, Module], root: str = "$.data") -> RecordInput:
    """Check one record of a request body; raises a ZohoError for the first problem."""
    path = f"{root}[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidData("invalid data", json_path=path, expected_data_type="jsonobject")
    values: dict[str, Any] = {}
    subforms: dict[str, list[RecordInput]] = {}
    record_id: int | None = None
    for key, value in raw.items():
        if key.startswith("$"):
            continue
        if key == "id":
            if value is None:
                continue
            text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(text, str) or not clock.is_record_id(text):
                raise InvalidData("the id given seems to be invalid", api_name="id",
                                  json_path=f"{path}.id")
            record_id = int(text)
            continue
        f = module.by_name.get(key)
        if f is None:
            raise InvalidData("invalid field", api_name=key, json_path=f"{path}.{key}")
        if f.read_only and f.api_name != "Owner":
            continue
        if f.data_type == "subform":
            sub = modules.get(f.subform or "")
            if sub is None or not isinstance(value, list | type(None)):
                raise _expected(f, f"{path}.{key}", "jsonarray")
            rows = value or []
            if len(rows) > 200:
                raise InvalidData("too many subform rows", api_name=key, limit=200)
            subforms[key] = [
                parse_input(sub, row, i, modules=modules, root=f"{path}.{key}",
                            creating=not (isinstance(row, Mapping) and row.get("id")))
                for i, row in enumerate(rows)
            ]
            continue
        values[key] = convert(f, value, f"{path}.{key}")
    if creating:
        check_mandatory(module, values, index, root)
        for f in module.fields:  # an unticked checkbox is false, as Zoho shows it
            if f.data_type == "boolean" and not f.read_only and f.api_name not in values:
                values[f.api_name] = False
    else:
        for key, value in values.items():
            if module.by_name[key].mandatory and value in (None, "", []):
                raise MandatoryNotFound(api_name=key, json_path=f"{path}.{key}")
    return RecordInput(index, values, record_id, subforms or None, path)


def check_mandatory(module: Module, values: Mapping[str, Any], index: int,
                    root: str = "$.data") -> None:
    """Raise MandatoryNotFound for the first mandatory field without a value."""
    for f in module.fields:
        if f.mandatory and f.data_type != "subform" and values.get(f.api_name) in (None, "", []):
            raise MandatoryNotFound(api_name=f.api_name,
                                    json_path=f"{root}[{index}].{f.api_name}")


def changed_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `new` whose value differs from `old`."""
    return {k: v for k, v in new.items() if old.get(k) != v}


def display_name(module: Module, values: Mapping[str, Any]) -> str | None:
    """The record's name in lookups and the recycle bin."""
    if module.api_name in ("Leads", "Contacts") and values.get("Last_Name"):
        first = values.get("First_Name")
        return f"{first} {values['Last_Name']}" if first else str(values["Last_Name"])
    if module.display_field and values.get(module.display_field) is not None:
        return str(values[module.display_field])
    return None


def computed(module: Module, values: Mapping[str, Any]) -> dict[str, Any]:
    """Values the server derives from others (Zoho's read-only Full_Name)."""
    out: dict[str, Any] = {}
    if "Full_Name" in module.by_name and "Last_Name" in module.by_name:
        out["Full_Name"] = display_name(module, values)
    return out


def render_value(f: Field, value: Any, tz: ZoneInfo) -> Any:
    """A stored value as the API shows it."""
    if value is None:
        return None
    if f.data_type == "datetime":
        return clock.local_text(value, tz)
    return value


def render(module: Module, record_id: int, data: Mapping[str, Any], created_ms: int,
           modified_ms: int, tz: ZoneInfo, only: frozenset[str] | None = None) -> dict[str, Any]:
    """A record as the API shows it: every field (or only those asked), system fields set."""
    out: dict[str, Any] = {}
    for f in module.fields:
        name = f.api_name
        if only is not None and name not in only and name != "id":
            continue
        if name == "id":
            out["id"] = str(record_id)
        elif name == "Created_Time":
            out[name] = clock.format_ms(created_ms, tz)
        elif name == "Modified_Time":
            out[name] = clock.format_ms(modified_ms, tz)
        elif f.data_type == "subform":
            continue
        else:
            value = data.get(name)
            out[name] = clock.local_text(value, tz) if (
                value is not None and f.data_type == "datetime") else value
    return out
