"""Modules and fields: the schema format, system fields, and the metadata Zoho clients read.

A schema document (YAML or JSON, see docs/schema.md) lists modules with their fields; the
loader checks it, adds the system fields every module has, and yields frozen `Module` values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")

DATA_TYPES = {
    # data_type: (json_type, default length)
    "text": ("string", 255),
    "textarea": ("string", 32000),
    "email": ("string", 100),
    "phone": ("string", 30),
    "website": ("string", 255),
    "autonumber": ("string", 255),
    "integer": ("integer", 9),
    "bigint": ("integer", 18),
    "double": ("double", 16),
    "currency": ("double", 16),
    "percent": ("double", 5),
    "boolean": ("boolean", 5),
    "date": ("string", 20),
    "datetime": ("string", 120),
    "picklist": ("string", 120),
    "multiselectpicklist": ("jsonarray", 2000),
    "lookup": ("jsonobject", 120),
    "ownerlookup": ("jsonobject", 120),
    "userlookup": ("jsonobject", 120),
    "subform": ("jsonarray", 0),
}
LOOKUP_TYPES = frozenset({"lookup", "ownerlookup", "userlookup"})
SYSTEM_FIELDS = ("id", "Owner", "Created_By", "Modified_By", "Created_Time", "Modified_Time",
                 "Parent_Id")
DEFAULT_DUPLICATE_CHECK = {
    "Leads": ("Email",), "Contacts": ("Email",), "Accounts": ("Account_Name",),
    "Deals": ("Deal_Name",), "Products": ("Product_Name",), "Vendors": ("Vendor_Name",),
    "Campaigns": ("Campaign_Name",), "Price_Books": ("Price_Book_Name",),
}


class SchemaError(ValueError):
    """A schema document that does not follow the format; the message says where."""


@dataclass(frozen=True, slots=True)
class Field:
    api_name: str
    label: str
    data_type: str
    length: int
    mandatory: bool = False
    unique: bool = False
    read_only: bool = False
    system: bool = False
    custom: bool = False
    decimal_place: int | None = None
    picklist: tuple[str, ...] = ()
    lookup: str | None = None
    subform: str | None = None
    auto_number: Mapping[str, Any] | None = None
    id: int = 0

    @property
    def json_type(self) -> str:
        return DATA_TYPES[self.data_type][0]


@dataclass(frozen=True, slots=True)
class Module:
    api_name: str
    module_name: str
    singular_label: str
    plural_label: str
    scope_name: str
    display_field: str | None
    kind: str
    parent: str | None
    fields: tuple[Field, ...]
    custom: bool = False
    id: int = 0
    by_name: Mapping[str, Field] = field(default_factory=dict, compare=False, repr=False)
    keyed: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """`keyed_fields()`, computed once."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.api_name: f for f in self.fields})
        object.__setattr__(self, "keyed", self.keyed_fields())

    @property
    def is_subform(self) -> bool:
        return self.kind == "subform"

    def subform_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.data_type == "subform")

    def duplicate_check_fields(self) -> tuple[str, ...]:
        unique = tuple(f.api_name for f in self.fields if f.unique)
        return unique or self._default_duplicate_check()

    def _default_duplicate_check(self) -> tuple[str, ...]:
        return tuple(n for n in DEFAULT_DUPLICATE_CHECK.get(self.api_name, ())
                     if n in self.by_name)

    def keyed_fields(self) -> frozenset[str]:
        """Fields whose values the store indexes for unique and duplicate checks: the unique
        fields and the default duplicate-check fields (which an upsert without
        `duplicate_check_fields` uses once the unique fields are gone)."""
        return frozenset(f.api_name for f in self.fields if f.unique) | frozenset(
            self._default_duplicate_check())


def _system_fields(kind: str, parent: str | None) -> list[Field]:
    fields = [
        Field("id", "Record Id", "bigint", 18, read_only=True, system=True),
        Field("Created_By", "Created By", "userlookup", 120, read_only=True, system=True),
        Field("Modified_By", "Modified By", "userlookup", 120, read_only=True, system=True),
        Field("Created_Time", "Created Time", "datetime", 120, read_only=True, system=True),
        Field("Modified_Time", "Modified Time", "datetime", 120, read_only=True, system=True),
    ]
    if kind == "subform":
        fields.append(Field("Parent_Id", "Parent Id", "lookup", 120, read_only=True,
                            system=True, lookup=parent))
    else:
        fields.insert(1, Field("Owner", "Owner", "ownerlookup", 120, system=True))
    return fields


def _req(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in obj or obj[key] in (None, ""):
        raise SchemaError(f"{where}: '{key}' is required")
    return obj[key]


def _field(raw: Any, where: str, custom: bool) -> Field:
    if not isinstance(raw, Mapping):
        raise SchemaError(f"{where}: a field must be a mapping")
    name = _req(raw, "api_name", where)
    if not isinstance(name, str) or not NAME.match(name):
        raise SchemaError(f"{where}: invalid api_name {name!r}")
    if name in SYSTEM_FIELDS:
        raise SchemaError(f"{where}: {name} is a system field, added automatically")
    dtype = _req(raw, "data_type", where)
    if dtype not in DATA_TYPES:
        raise SchemaError(f"{where}: unknown data_type {dtype!r}")
    picklist = tuple(str(v) for v in raw.get("picklist") or ())
    if dtype in ("picklist", "multiselectpicklist") and not picklist:
        raise SchemaError(f"{where}: a {dtype} needs 'picklist' values")
    if dtype == "lookup" and not isinstance(raw.get("lookup"), str):
        raise SchemaError(f"{where}: a lookup needs 'lookup: <module>'")
    if dtype == "subform" and not isinstance(raw.get("subform"), str):
        raise SchemaError(f"{where}: a subform needs 'subform: <module>'")
    length = raw.get("length", DATA_TYPES[dtype][1])
    if not isinstance(length, int) or length < 0:
        raise SchemaError(f"{where}: length must be a whole number")
    known = {"api_name", "label", "data_type", "length", "mandatory", "unique", "read_only",
             "decimal_place", "picklist", "lookup", "subform", "auto_number", "custom", "id"}
    if extra := set(raw) - known:
        raise SchemaError(f"{where}: unknown keys {sorted(extra)}")
    return Field(
        api_name=name, label=str(_req(raw, "label", where)), data_type=dtype, length=length,
        mandatory=bool(raw.get("mandatory", False)), unique=bool(raw.get("unique", False)),
        read_only=bool(raw.get("read_only", dtype == "autonumber")),
        custom=bool(raw.get("custom", custom)), decimal_place=raw.get("decimal_place"),
        picklist=picklist, lookup=raw.get("lookup"), subform=raw.get("subform"),
        auto_number=raw.get("auto_number"), id=int(raw.get("id") or 0),
    )


def load_modules(doc: Any, *, custom: bool = False) -> list[Module]:
    """Check a schema document and return its modules with system fields added."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("modules"), list):
        raise SchemaError("the document needs a top-level 'modules' list")
    modules = []
    for i, raw in enumerate(doc["modules"]):
        where = f"modules[{i}]"
        if not isinstance(raw, Mapping):
            raise SchemaError(f"{where}: a module must be a mapping")
        name = _req(raw, "api_name", where)
        if not isinstance(name, str) or not NAME.match(name):
            raise SchemaError(f"{where}: invalid api_name {name!r}")
        where = f"module {name}"
        kind = raw.get("kind", "standard")
        if kind not in ("standard", "subform"):
            raise SchemaError(f"{where}: kind must be standard or subform")
        parent = raw.get("parent")
        if kind == "subform" and not isinstance(parent, str):
            raise SchemaError(f"{where}: a subform module needs 'parent'")
        sys_ids = raw.get("system_field_ids") or {}
        fields = [replace(f, id=int(sys_ids.get(f.api_name, 0)))
                  for f in _system_fields(kind, parent)]
        seen = {f.api_name for f in fields}
        for j, rawf in enumerate(raw.get("fields") or []):
            f = _field(rawf, f"{where} fields[{j}]", custom)
            if f.api_name in seen:
                raise SchemaError(f"{where}: field {f.api_name} defined twice")
            seen.add(f.api_name)
            fields.append(f)
        display = raw.get("display_field")
        if display is not None and display not in seen:
            raise SchemaError(f"{where}: display_field {display} is not a field")
        modules.append(Module(
            api_name=name, module_name=str(raw.get("module_name") or name),
            singular_label=str(_req(raw, "singular_label", where)),
            plural_label=str(_req(raw, "plural_label", where)),
            scope_name=str(raw.get("scope_name") or name.replace("_", "").lower()),
            display_field=display, kind=kind, parent=parent, fields=tuple(fields),
            custom=bool(raw.get("custom", custom)), id=int(raw.get("id") or 0),
        ))
    return modules


def check_references(modules: Iterable[Module]) -> None:
    """Every lookup, subform and parent must name a module of the set."""
    names = {m.api_name for m in modules}
    for m in modules:
        if m.parent and m.parent not in names:
            raise SchemaError(f"module {m.api_name}: parent {m.parent} is not a module")
        for f in m.fields:
            target = f.lookup or f.subform
            if target and target not in names:
                raise SchemaError(f"module {m.api_name}: {f.api_name} names unknown {target}")


def merge_modules(existing: Iterable[Module], new: Iterable[Module]) -> list[Module]:
    """Apply a schema: new modules are added, fields of existing ones added or replaced.

    System modules keep their ids and their existing fields' ids; nothing is removed.
    """
    result = {m.api_name: m for m in existing}
    for m in new:
        old = result.get(m.api_name)
        if old is None:
            result[m.api_name] = m
            continue
        fields = {f.api_name: f for f in old.fields}
        for f in m.fields:
            prev = fields.get(f.api_name)
            if prev is not None and prev.system:
                continue
            fields[f.api_name] = replace(f, id=prev.id if prev else f.id)
        result[m.api_name] = replace(old, fields=tuple(fields.values()),
                                     singular_label=m.singular_label,
                                     plural_label=m.plural_label)
    return list(result.values())


def module_to_doc(m: Module) -> dict[str, Any]:
    """A module back in the schema format (with ids), for storage."""
    fields = []
    for f in m.fields:
        if f.system:
            continue
        d: dict[str, Any] = {"api_name": f.api_name, "label": f.label,
                             "data_type": f.data_type, "length": f.length, "id": f.id}
        for key in ("mandatory", "unique", "read_only", "custom"):
            if getattr(f, key):
                d[key] = True
        for key in ("decimal_place", "lookup", "subform", "auto_number"):
            if getattr(f, key) is not None:
                d[key] = getattr(f, key)
        if f.picklist:
            d["picklist"] = list(f.picklist)
        fields.append(d)
    return {"api_name": m.api_name, "module_name": m.module_name,
            "singular_label": m.singular_label, "plural_label": m.plural_label,
            "scope_name": m.scope_name, "display_field": m.display_field, "kind": m.kind,
            "parent": m.parent, "custom": m.custom, "id": m.id, "fields": fields,
            "system_field_ids": {f.api_name: f.id for f in m.fields if f.system}}


def assign_ids(m: Module, next_id: Any) -> Module:
    """Give a module and its fields ids from `next_id()` where they have none."""
    fields = tuple(f if f.id else replace(f, id=next_id()) for f in m.fields)
    return replace(m, id=m.id or next_id(), fields=fields)


# -- metadata as the API shows it -------------------------------------------------------------

def field_json(f: Field, modules: Mapping[str, Module],
               legacy_v2: bool = False) -> dict[str, Any]:
    """One entry of `GET /settings/fields`, with every key real clients read.

    `legacy_v2`: the API v2 shapes (before v2.1), which the v2 SDK needs: `lookup.module` is
    the target module's API name as a plain string (an object `{api_name, id}` from v2.1 on),
    and a subform field names its module in `subform.module` (`associated_module` from v2.1).
    """
    lookup: dict[str, Any] = {}
    if f.lookup or f.data_type in ("ownerlookup", "userlookup"):
        target = modules.get(f.lookup) if f.lookup else None
        target_name = target.api_name if target else "users"
        lookup = {
            "display_label": target.singular_label if target else "User",
            "api_name": f.api_name,
            "module": target_name if legacy_v2 else {
                "api_name": target_name, "id": str(target.id) if target else None},
            "id": str(f.id),
        }
    sub = modules.get(f.subform) if f.subform else None
    legacy: dict[str, Any] = {}
    if legacy_v2:
        legacy["subform"] = {"module": sub.api_name, "id": str(sub.id)} if sub else None
    picklist = [{"display_value": v, "actual_value": v, "sequence_number": i + 1,
                 "id": f"{f.id}{i + 1:03d}", "type": "used"}
                for i, v in enumerate(f.picklist)]
    if f.data_type == "picklist":
        picklist.insert(0, {"display_value": "-None-", "actual_value": "-None-",
                            "sequence_number": 0, "id": "0", "type": "used"})
    return {
        "api_name": f.api_name,
        "id": str(f.id),
        "field_label": f.label,
        "display_label": f.label,
        "column_name": f.api_name.upper(),
        "data_type": f.data_type,
        "json_type": f.json_type,
        "length": f.length,
        "decimal_place": f.decimal_place,
        "system_mandatory": f.mandatory,
        "custom_field": f.custom,
        "read_only": f.read_only,
        "field_read_only": f.read_only,
        "unique": {"casesensitive": False} if f.unique else {},
        "visible": True,
        "pick_list_values": picklist,
        "lookup": lookup,
        "associated_module": {"module": sub.api_name, "id": str(sub.id)} if sub else None,
        "auto_number": dict(f.auto_number) if f.auto_number else {},
        "formula": {},
        "currency": {},
        "created_source": "custom" if f.custom else "default",
        "api_supported": True,
        **legacy,
    }


def module_json(m: Module, modified_ms_text: str | None = None) -> dict[str, Any]:
    """One entry of `GET /settings/modules`."""
    return {
        "api_name": m.api_name,
        "module_name": m.module_name,
        "id": str(m.id),
        "api_supported": True,
        "singular_label": m.singular_label,
        "plural_label": m.plural_label,
        "generated_type": "subform" if m.is_subform else ("custom" if m.custom else "default"),
        "creatable": not m.is_subform,
        "editable": True,
        "deletable": True,
        "viewable": True,
        "visible": True,
        "visibility": 1,
        "status": "visible",
        "presence_sub_menu": not m.is_subform,
        "quick_create": not m.is_subform,
        "global_search_supported": not m.is_subform,
        "show_as_tab": not m.is_subform,
        "sequence_number": 0,
        "modified_time": modified_ms_text,
        "parent_module": {"api_name": m.parent} if m.parent else {},
        "profiles": [{"name": "Administrator", "id": "1"}],
    }
