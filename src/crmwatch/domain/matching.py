"""Matching committed record events against channels: events x channels -> notifications.

Pure. The dispatcher folds the journal in sequence order and calls `match` with a run of record
events and the channels as they stood when those events committed (channel changes are journal
events too, so it splits runs at them). Rules:

* Events are grouped per (batch, module, operation), a batch being one API call; groups come
  out in the order of their first event, ids in sequence order (a record repeated within a
  group is listed once, its affected fields merged), chunked at `MAX_IDS`.
* A channel gets a group's event when it watches the operation on the module (`insert` ->
  `create`, `update` -> `edit`, `delete` -> `delete`) and was live when the event committed
  (`expiry_ms > time_ms`): expiry stops new matches, and what happened before is still owed.
* `notification_condition` filters update events only (see `channels.satisfied`).
* Related actions (`notify_on_related_action`): an event whose `related` names records of a
  module the channel watches for `edit` yields one `update` notification per (batch, module)
  for those records, without affected values, after the batch's direct notifications. A related
  record already notified as updated to the same channel in the same batch is not repeated,
  and a channel with a condition on that module gets no related notifications for it (a
  related action changes none of the selected fields).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from crmwatch.domain.channels import Channel, satisfied

MAX_IDS = 100
EVENT_OPERATIONS: Mapping[str, str] = {"insert": "create", "update": "edit", "delete": "delete"}
"""A journal operation -> the `events` operation a channel subscribes to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One committed record change of the journal."""

    seq: int
    module: str
    record_id: int
    operation: str  # insert | update | delete
    changed: tuple[str, ...] = ()
    values: Mapping[str, object] = field(default_factory=dict)
    """New values (stored form): all fields of an insert, the changed ones of an update."""
    batch: int
    """Events written by one API call share it."""
    related: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """For related-action notifications: module -> ids of records this one points to."""
    time_ms: int


@dataclass(frozen=True, slots=True)
class Affected:
    """One record's changed fields and their new values."""

    record_id: str
    fields: tuple[str, ...]
    values: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook owed to one channel.

    `affected` is None when the channel did not ask for affected values (at match time).
    """

    channel_id: str
    module: str
    operation: str  # insert | update | delete
    ids: tuple[str, ...]
    affected: tuple[Affected, ...] | None
    first_seq: int
    last_seq: int
    related: bool = False


def affected_of(event: Event) -> Affected:
    """What an event changed: its `changed` fields, or for a delete the fields it carries."""
    names = event.changed or tuple(event.values)
    return Affected(str(event.record_id), names,
                    {k: event.values[k] for k in names if k in event.values})


def match(events: Sequence[Event], channels: Mapping[str, Channel]) -> list[Notification]:
    """The notifications owed for `events` (in sequence order) to `channels`."""
    batches: dict[int, list[Event]] = {}
    for e in events:
        batches.setdefault(e.batch, []).append(e)
    out: list[Notification] = []
    for batch in batches.values():
        out.extend(_match_batch(batch, channels))
    return out


def _match_batch(events: list[Event], channels: Mapping[str, Channel]) -> list[Notification]:
    groups: dict[tuple[str, str], list[Event]] = {}
    for e in events:
        groups.setdefault((e.module, e.operation), []).append(e)
    out: list[Notification] = []
    updated: set[tuple[str, str, int]] = set()
    for (module, operation), group in groups.items():
        subscribed = EVENT_OPERATIONS.get(operation)
        if subscribed is None:
            continue
        for channel in channels.values():
            if not channel.watches(module, subscribed):
                continue
            condition = channel.conditions.get(module) if operation == "update" else None
            hits = [e for e in group if channel.is_live(e.time_ms)
                    and (condition is None or satisfied(condition, e.changed))]
            if not hits:
                continue
            if operation == "update":
                updated.update((channel.channel_id, module, e.record_id) for e in hits)
            out.extend(_chunks(channel, module, operation,
                               [(e.record_id, e.seq, affected_of(e)) for e in hits],
                               channel.return_affected_field_values, related=False))
    for channel in channels.values():
        if channel.notify_on_related_action:
            out.extend(_related(events, channel, updated))
    return out


def _related(events: list[Event], channel: Channel,
             updated: set[tuple[str, str, int]]) -> list[Notification]:
    per_module: dict[str, list[tuple[int, int, None]]] = {}
    for e in events:
        if not channel.is_live(e.time_ms):
            continue
        for module, ids in e.related.items():
            if not channel.watches(module, "edit") or module in channel.conditions:
                continue
            per_module.setdefault(module, []).extend(
                (rid, e.seq, None) for rid in ids
                if (channel.channel_id, module, rid) not in updated)
    out: list[Notification] = []
    for module, hits in per_module.items():
        if hits:
            out.extend(_chunks(channel, module, "update", hits,
                               channel.return_affected_field_values, related=True))
    return out


def _chunks(channel: Channel, module: str, operation: str,
            hits: Iterable[tuple[int, int, Affected | None]], with_affected: bool, *,
            related: bool) -> list[Notification]:
    """One notification per `MAX_IDS` distinct records, in order of first appearance."""
    merged: dict[int, tuple[int, int, Affected | None]] = {}
    for record_id, seq, aff in hits:
        prev = merged.get(record_id)
        if prev is None:
            merged[record_id] = (seq, seq, aff)
        else:
            merged[record_id] = (prev[0], seq, _merge(prev[2], aff))
    records = list(merged.values())
    ids = [str(rid) for rid in merged]
    out = []
    for start in range(0, len(records), MAX_IDS):
        part = records[start:start + MAX_IDS]
        affected: tuple[Affected, ...] | None = None
        if with_affected:
            affected = tuple(a for _, _, a in part if a is not None)
        out.append(Notification(
            channel_id=channel.channel_id, module=module, operation=operation,
            ids=tuple(ids[start:start + MAX_IDS]), affected=affected,
            first_seq=min(first for first, _, _ in part),
            last_seq=max(last for _, last, _ in part), related=related))
    return out


def _merge(old: Affected | None, new: Affected | None) -> Affected | None:
    if old is None or new is None:
        return new or old
    names = tuple(dict.fromkeys(old.fields + new.fields))
    return Affected(old.record_id, names, {**old.values, **new.values})
