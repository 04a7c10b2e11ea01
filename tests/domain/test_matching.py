"""Matching: grouping per call, liveness at commit time, conditions, related actions."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crmwatch.domain.channels import OPERATIONS, Channel, FieldGroup, FieldRef, satisfied
from crmwatch.domain.matching import (
    EVENT_OPERATIONS,
    MAX_IDS,
    Affected,
    Event,
    Notification,
    affected_of,
    match,
)
from tests.strategies import NOW, channels, event_runs


def channel(cid: str = "1", **kw: Any) -> Channel:
    base = Channel(channel_id=cid, notify_url="http://127.0.0.1:9/h", token=None,
                   expiry_ms=NOW + 3_600_000, return_affected_field_values=False,
                   notify_on_related_action=False,
                   events={"Leads": frozenset(OPERATIONS)}, conditions={}, fields=None,
                   created_ms=NOW, updated_ms=NOW)
    return replace(base, **kw)


def ev(seq: int, record_id: int, operation: str = "update", *, module: str = "Leads",
       batch: int = 1, changed: tuple[str, ...] = ("Company",), time_ms: int = NOW,
       values: dict[str, object] | None = None,
       related: dict[str, tuple[int, ...]] | None = None) -> Event:
    return Event(seq=seq, module=module, record_id=record_id, operation=operation,
                 changed=changed,
                 values=values if values is not None else {k: f"v{seq}" for k in changed},
                 batch=batch, related=related or {}, time_ms=time_ms)


def by_id(*chs: Channel) -> dict[str, Channel]:
    return {c.channel_id: c for c in chs}


class TestGrouping:
    """One notification per (call, module, operation) and channel; ids in order, chunked."""

    def test_one_call_one_notification(self) -> None:
        (n,) = match([ev(1, 11, "insert"), ev(2, 12, "insert"), ev(3, 13, "insert")],
                     by_id(channel()))
        assert n == Notification("1", "Leads", "insert", ("11", "12", "13"), None, 1, 3)

    def test_calls_stay_apart(self) -> None:
        got = match([ev(1, 11, batch=1), ev(2, 12, batch=2)], by_id(channel()))
        assert [(n.ids, n.first_seq) for n in got] == [(("11",), 1), (("12",), 2)]

    def test_modules_and_operations_stay_apart(self) -> None:
        c = channel(events={"Leads": frozenset(OPERATIONS), "Lead_Items": frozenset(OPERATIONS)})
        events = [ev(1, 11, "insert"), ev(2, 21, "insert", module="Lead_Items"),
                  ev(3, 12, "insert"), ev(4, 22, "insert", module="Lead_Items"),
                  ev(5, 23, "delete", module="Lead_Items")]
        got = [(n.module, n.operation, n.ids) for n in match(events, by_id(c))]
        assert got == [("Leads", "insert", ("11", "12")),
                       ("Lead_Items", "insert", ("21", "22")),
                       ("Lead_Items", "delete", ("23",))]

    def test_chunks_of_100(self) -> None:
        events = [ev(i, 1000 + i, "insert") for i in range(1, 251)]
        got = match(events, by_id(channel()))
        assert [len(n.ids) for n in got] == [100, 100, 50]
        assert [(n.first_seq, n.last_seq) for n in got] == [(1, 100), (101, 200), (201, 250)]
        assert [i for n in got for i in n.ids] == [str(1000 + i) for i in range(1, 251)]

    def test_a_record_twice_in_one_call_is_listed_once(self) -> None:
        c = channel(return_affected_field_values=True)
        events = [ev(1, 11, changed=("Company",)), ev(2, 12, changed=("Phone",)),
                  ev(3, 11, changed=("Phone",))]
        (n,) = match(events, by_id(c))
        assert n.ids == ("11", "12")
        assert n.affected == (Affected("11", ("Company", "Phone"),
                                       {"Company": "v1", "Phone": "v3"}),
                              Affected("12", ("Phone",), {"Phone": "v2"}))
        assert (n.first_seq, n.last_seq) == (1, 3)

    def test_one_notification_per_channel(self) -> None:
        got = match([ev(1, 11)], by_id(channel("1"), channel("2"), channel("3")))
        assert [n.channel_id for n in got] == ["1", "2", "3"]

    def test_nothing_in_nothing_out(self) -> None:
        assert match([], by_id(channel())) == []
        assert match([ev(1, 11)], {}) == []


class TestOperations:
    """`insert` needs `create`, `update` needs `edit`, `delete` needs `delete`."""

    def test_mapping(self) -> None:
        assert EVENT_OPERATIONS == {"insert": "create", "update": "edit", "delete": "delete"}
        for op, sub in EVENT_OPERATIONS.items():
            only = channel(events={"Leads": frozenset({sub})})
            others = channel("2", events={"Leads": frozenset(OPERATIONS) - {sub}})
            got = match([ev(1, 11, op)], by_id(only, others))
            assert [(n.channel_id, n.operation) for n in got] == [("1", op)]

    def test_other_modules_do_not_match(self) -> None:
        assert match([ev(1, 11, module="Deals")], by_id(channel())) == []

    def test_unknown_operations_are_ignored(self) -> None:
        assert match([ev(1, 11, "restore")], by_id(channel())) == []


class TestLiveness:
    """A channel gets what committed while it was live, whatever the time of matching."""

    def test_expired_before_the_event(self) -> None:
        c = channel(expiry_ms=NOW)
        assert match([ev(1, 11, time_ms=NOW)], by_id(c)) == []
        assert len(match([ev(1, 11, time_ms=NOW - 1)], by_id(c))) == 1

    def test_expiry_inside_a_call(self) -> None:
        c = channel(expiry_ms=NOW + 1)
        (n,) = match([ev(1, 11, time_ms=NOW), ev(2, 12, time_ms=NOW + 1)], by_id(c))
        assert n.ids == ("11",)


class TestConditions:
    """`notification_condition` filters updates only: `or` any, `and` all selected fields."""

    OR = FieldGroup("or", (FieldRef("Company", 1), FieldRef("Phone", 2)))
    AND = FieldGroup("and", (FieldRef("Company", 1), FieldRef("Phone", 2)))

    def test_or(self) -> None:
        c = channel(conditions={"Leads": self.OR})
        events = [ev(1, 11, changed=("Email",)), ev(2, 12, changed=("Phone", "Email")),
                  ev(3, 13, changed=())]
        assert [n.ids for n in match(events, by_id(c))] == [("12",)]

    def test_and(self) -> None:
        c = channel(conditions={"Leads": self.AND})
        events = [ev(1, 11, changed=("Phone",)), ev(2, 12, changed=("Phone", "Company"))]
        assert [n.ids for n in match(events, by_id(c))] == [("12",)]

    def test_inserts_and_deletes_are_not_filtered(self) -> None:
        c = channel(conditions={"Leads": self.AND})
        events = [ev(1, 11, "insert", changed=("Email",)), ev(2, 12, "delete", changed=())]
        assert [n.operation for n in match(events, by_id(c))] == ["insert", "delete"]

    def test_conditions_are_per_module(self) -> None:
        c = channel(events={"Leads": frozenset(OPERATIONS), "Deals": frozenset(OPERATIONS)},
                    conditions={"Leads": self.AND})
        got = match([ev(1, 31, module="Deals", changed=("Email",))], by_id(c))
        assert [n.module for n in got] == ["Deals"]


class TestAffected:
    """Affected fields and values ride along only when the channel asked."""

    def test_not_asked(self) -> None:
        (n,) = match([ev(1, 11)], by_id(channel()))
        assert n.affected is None

    def test_update(self) -> None:
        (n,) = match([ev(1, 11, changed=("Company", "Phone"))],
                     by_id(channel(return_affected_field_values=True)))
        assert n.affected == (Affected("11", ("Company", "Phone"),
                                       {"Company": "v1", "Phone": "v1"}),)

    def test_delete_carries_what_it_has(self) -> None:
        e = ev(1, 11, "delete", changed=(), values={"Modified_By": {"id": "5", "name": "A"}})
        assert affected_of(e) == Affected("11", ("Modified_By",),
                                          {"Modified_By": {"id": "5", "name": "A"}})

    def test_values_only_for_listed_fields(self) -> None:
        e = ev(1, 11, changed=("Items",), values={})
        assert affected_of(e) == Affected("11", ("Items",), {})


class TestRelated:
    """A change to a record pointing at a watched record notifies an update of the latter."""

    def related_channel(self, **kw: Any) -> Channel:
        return channel(events={"Accounts": frozenset({"edit"})},
                       notify_on_related_action=True, **kw)

    def test_contact_update_notifies_its_account(self) -> None:
        events = [ev(1, 11, module="Contacts", related={"Accounts": (7,)}),
                  ev(2, 12, "insert", module="Contacts", related={"Accounts": (8, 7)})]
        (n,) = match(events, by_id(self.related_channel(return_affected_field_values=True)))
        assert n == Notification("1", "Accounts", "update", ("7", "8"), (), 1, 2, related=True)

    def test_off_when_not_asked(self) -> None:
        c = self.related_channel()
        c = replace(c, notify_on_related_action=False)
        assert match([ev(1, 11, module="Contacts", related={"Accounts": (7,)})], by_id(c)) == []

    def test_needs_edit_on_the_related_module(self) -> None:
        c = channel(events={"Accounts": frozenset({"create", "delete"})},
                    notify_on_related_action=True)
        assert match([ev(1, 11, module="Contacts", related={"Accounts": (7,)})], by_id(c)) == []

    def test_not_repeated_after_a_direct_update(self) -> None:
        events = [ev(1, 7, module="Accounts"),
                  ev(2, 11, module="Contacts", related={"Accounts": (7, 8)})]
        got = match(events, by_id(self.related_channel()))
        assert [(n.ids, n.related) for n in got] == [(("7",), False), (("8",), True)]

    def test_a_condition_suppresses_it(self) -> None:
        c = self.related_channel(conditions={"Accounts": FieldRef("Account_Name", 1)})
        assert match([ev(1, 11, module="Contacts", related={"Accounts": (7,)})], by_id(c)) == []

    def test_liveness_applies(self) -> None:
        c = self.related_channel(expiry_ms=NOW)
        assert match([ev(1, 11, module="Contacts", related={"Accounts": (7,)})], by_id(c)) == []

    def test_after_the_direct_ones_of_the_call(self) -> None:
        c = replace(self.related_channel(),
                    events={"Accounts": frozenset({"edit"}), "Contacts": frozenset(OPERATIONS)})
        got = match([ev(1, 11, module="Contacts", related={"Accounts": (7,)})], by_id(c))
        assert [(n.module, n.related) for n in got] == [("Contacts", False), ("Accounts", True)]


channel_maps = st.lists(channels(), max_size=4, unique_by=lambda c: c.channel_id).map(
    lambda cs: {c.channel_id: c for c in cs})


def direct_match(e: Event, c: Channel) -> bool:
    op = EVENT_OPERATIONS[e.operation]
    cond = c.conditions.get(e.module) if e.operation == "update" else None
    return (c.watches(e.module, op) and c.is_live(e.time_ms)
            and (cond is None or satisfied(cond, e.changed)))


class TestProperties:
    """Invariants of `match` over random runs of events and channels."""

    @given(event_runs(), channel_maps)
    def test_never_for_a_lapsed_channel(self, events: list[Event],
                                        chans: dict[str, Channel]) -> None:
        by_seq = {e.seq: e for e in events}
        for n in match(events, chans):
            c = chans[n.channel_id]
            for seq in (n.first_seq, n.last_seq):
                assert c.is_live(by_seq[seq].time_ms)

    @given(event_runs(), channel_maps)
    def test_every_direct_pair_exactly_once(self, events: list[Event],
                                            chans: dict[str, Channel]) -> None:
        got = [n for n in match(events, chans) if not n.related]
        batch_of = {e.seq: e.batch for e in events}
        seen: Counter[tuple[str, int, str, str, str]] = Counter()
        for n in got:
            assert batch_of[n.first_seq] == batch_of[n.last_seq]
            for rid in n.ids:
                seen[(n.channel_id, batch_of[n.first_seq], n.module, n.operation, rid)] += 1
        expected = {(c.channel_id, e.batch, e.module, e.operation, str(e.record_id))
                    for e in events for c in chans.values() if direct_match(e, c)}
        assert set(seen) == expected
        assert all(count == 1 for count in seen.values())

    @given(event_runs(), channel_maps)
    def test_related_only_for_related_watchers(self, events: list[Event],
                                               chans: dict[str, Channel]) -> None:
        for n in match(events, chans):
            if n.related:
                c = chans[n.channel_id]
                assert c.notify_on_related_action and c.watches(n.module, "edit")
                assert n.operation == "update"
                assert n.module not in c.conditions
                assert n.affected in (None, ())

    @given(event_runs(max_size=60), channel_maps)
    def test_chunks_bounded_ordered_and_distinct(self, events: list[Event],
                                                 chans: dict[str, Channel]) -> None:
        first_seq: dict[tuple[int, str, str, str], int] = {}
        for e in events:
            first_seq.setdefault((e.batch, e.module, e.operation, str(e.record_id)), e.seq)
        batch_of = {e.seq: e.batch for e in events}
        for n in match(events, chans):
            assert 1 <= len(n.ids) <= MAX_IDS
            assert len(set(n.ids)) == len(n.ids)
            assert n.first_seq <= n.last_seq
            if not n.related:
                order = [first_seq[(batch_of[n.first_seq], n.module, n.operation, i)]
                         for i in n.ids]
                assert order == sorted(order)
            if n.affected:
                assert tuple(a.record_id for a in n.affected) == n.ids

    @given(event_runs(), channel_maps)
    def test_per_channel_in_commit_order(self, events: list[Event],
                                         chans: dict[str, Channel]) -> None:
        batch_of = {e.seq: e.batch for e in events}
        last: dict[str, int] = {}
        for n in match(events, chans):
            assert batch_of[n.first_seq] == batch_of[n.last_seq]
            assert batch_of[n.first_seq] >= last.get(n.channel_id, 0)
            last[n.channel_id] = batch_of[n.first_seq]
