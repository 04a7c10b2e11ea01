"""Hypothesis strategies and a small module catalog shared by the domain tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from crmwatch.domain.channels import OPERATIONS, Channel, FieldGroup, FieldRef, Selection
from crmwatch.domain.matching import Event
from crmwatch.domain.modules import Module, load_modules

SCHEMA: dict[str, Any] = {"modules": [
    {"api_name": "Leads", "singular_label": "Lead", "plural_label": "Leads",
     "id": 4100000000000125, "fields": [
         {"api_name": "Last_Name", "label": "Last Name", "data_type": "text", "id": 501},
         {"api_name": "Company", "label": "Company", "data_type": "text", "id": 502},
         {"api_name": "Phone", "label": "Phone", "data_type": "phone", "id": 503},
         {"api_name": "Email", "label": "Email", "data_type": "email", "id": 504},
         {"api_name": "Met_At", "label": "Met At", "data_type": "datetime", "id": 505},
         {"api_name": "Account", "label": "Account", "data_type": "lookup",
          "lookup": "Accounts", "id": 506},
         {"api_name": "Items", "label": "Items", "data_type": "subform",
          "subform": "Lead_Items", "id": 507},
         {"api_name": "Rating", "label": "Rating", "data_type": "integer", "id": 508},
         {"api_name": "Notes", "label": "Notes", "data_type": "textarea", "id": 509},
         {"api_name": "City", "label": "City", "data_type": "text", "id": 510},
         {"api_name": "State", "label": "State", "data_type": "text", "id": 511},
         {"api_name": "Zip", "label": "Zip", "data_type": "text", "id": 512},
     ]},
    {"api_name": "Accounts", "singular_label": "Account", "plural_label": "Accounts",
     "id": 4100000000000127, "fields": [
         {"api_name": "Account_Name", "label": "Account Name", "data_type": "text",
          "id": 601}]},
    {"api_name": "Deals", "singular_label": "Deal", "plural_label": "Deals",
     "id": 4100000000000131, "fields": [
         {"api_name": "Deal_Name", "label": "Deal Name", "data_type": "text", "id": 701},
         {"api_name": "Company", "label": "Company", "data_type": "text", "id": 702}]},
    {"api_name": "Lead_Items", "singular_label": "Lead Item", "plural_label": "Lead Items",
     "kind": "subform", "parent": "Leads", "id": 4100000000000140, "fields": [
         {"api_name": "Qty", "label": "Qty", "data_type": "integer", "id": 801}]},
]}
MODULES: dict[str, Module] = {m.api_name: m for m in load_modules(SCHEMA)}
MODULE_NAMES = ("Leads", "Accounts", "Deals", "Lead_Items")
FIELD_NAMES = ("Company", "Phone", "Email", "City")

NOW = 1_763_888_000_000  # 2025-11-23T08:53:20Z

OPERATION_SETS = tuple(frozenset(s) for s in (
    ("create",), ("edit",), ("delete",), ("create", "edit"), ("edit", "delete"),
    ("create", "delete"), OPERATIONS))
channel_ids = st.integers(min_value=0, max_value=2**63 - 1).map(str)


def selections(names: tuple[str, ...] = FIELD_NAMES) -> st.SearchStrategy[Selection]:
    """Field selections over `names` (ids 0), at most 10 fields, groups of one or two."""
    leaves = st.sampled_from(names).map(lambda n: FieldRef(n, 0))
    return st.recursive(
        leaves,
        lambda inner: st.builds(FieldGroup, st.sampled_from(["and", "or"]),
                                st.lists(inner, min_size=1, max_size=2).map(tuple)),
        max_leaves=10)


def channels(*, with_conditions: bool = True) -> st.SearchStrategy[Channel]:
    """A channel on the test modules; expiry within a few seconds of NOW."""
    return st.builds(
        _channel,
        channel_ids,
        st.lists(st.tuples(st.sampled_from(MODULE_NAMES), st.sampled_from(OPERATION_SETS)),
                 min_size=1, max_size=3, unique_by=lambda p: p[0]),
        st.none() | selections() if with_conditions else st.none(),
        st.tuples(st.sampled_from(["http://127.0.0.1:9/hook",
                                   "https://h.example/z?tenant=acme&env=dev"]),
                  st.sampled_from([None, "", "tok", "ü" * 50]),
                  st.integers(min_value=-5, max_value=20), st.booleans(), st.booleans(),
                  st.sampled_from([None, {"Leads": ["Company"]}])),
    )


def _channel(channel_id: str, events: list[tuple[str, frozenset[str]]],
             selection: Selection | None, rest: tuple[Any, ...]) -> Channel:
    url, token, expiry, affected, related, fields = rest
    watched = dict(events)
    return Channel(
        channel_id=channel_id, notify_url=url, token=token, expiry_ms=NOW + expiry,
        return_affected_field_values=affected, notify_on_related_action=related,
        events=watched,
        conditions={"Leads": selection} if selection is not None and "Leads" in watched
        else {},
        fields=fields, created_ms=NOW - 1000, updated_ms=NOW - 500)


RELATED: tuple[dict[str, tuple[int, ...]], ...] = (
    {}, {}, {"Accounts": (1,)}, {"Accounts": (2, 1)}, {"Leads": (3,)},
    {"Accounts": (1,), "Leads": (4, 5)}, {"Deals": (6,)}, {"Lead_Items": (2,)})
CHANGED: tuple[tuple[str, ...], ...] = (
    (), ("Company",), ("Phone",), ("Email",), ("Company", "Phone"), ("City", "Email"),
    ("Company", "Phone", "Email"))

_event_parts = st.tuples(
    st.integers(0, 3),  # 0: a new batch (one API call) starts here
    st.integers(0, 4),  # clock step at a new batch
    st.sampled_from(["insert", "update", "delete"]),
    st.sampled_from(MODULE_NAMES),
    st.integers(1, 8),
    st.sampled_from(CHANGED),
    st.sampled_from(RELATED),
)


def event_runs(max_size: int = 30) -> st.SearchStrategy[list[Event]]:
    """Record events in sequence order, batches contiguous, times around NOW."""
    return st.lists(_event_parts, max_size=max_size).map(_events)


def _events(parts: list[tuple[int, int, str, str, int, tuple[str, ...],
                              dict[str, tuple[int, ...]]]]) -> list[Event]:
    out: list[Event] = []
    batch, time_ms = 0, NOW - 3
    for seq, (new, step, op, module, record_id, changed, related) in enumerate(parts, 1):
        if not out or new == 0:
            batch += 1
            time_ms += step
        out.append(Event(seq=seq, module=module, record_id=record_id, operation=op,
                         changed=changed, values={k: "v" for k in changed}, batch=batch,
                         related=related, time_ms=time_ms))
    return out
