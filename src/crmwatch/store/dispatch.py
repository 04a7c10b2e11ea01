"""The dispatcher's flow: fold an org's journal into deliveries, cursor in the same transaction.

Channel events update the dispatcher's view of the channels; record events are matched
against the view as it stood at their commit (`domain.matching.match`). The deliveries, the
new cursor and the new view commit together, so a crash at any instant neither loses nor
duplicates a delivery: the next run starts from the committed cursor.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from crmwatch.domain.channels import Channel
from crmwatch.domain.matching import Event, Notification, match
from crmwatch.store.base import Flow, Query
from crmwatch.store.channels import CHANNEL_MODULE

BATCH = 2000


@dataclass(frozen=True, slots=True)
class Dispatched:
    events: int
    deliveries: int
    channels: tuple[str, ...]
    more: bool


def _event(row: Sequence[Any]) -> Event:
    related = {m: tuple(int(i) for i in ids)
               for m, ids in orjson.loads(row[6]).items()}
    return Event(seq=int(row[0]), module=row[1], record_id=int(row[2]), operation=row[3],
                 changed=tuple(orjson.loads(row[4])), values=orjson.loads(row[5]),
                 related=related, batch=int(row[7]), time_ms=int(row[8]))


def _affected(n: Notification) -> str | None:
    if n.affected is None:
        return None
    return orjson.dumps([{"record_id": a.record_id, "fields": list(a.fields),
                          "values": dict(a.values)} for a in n.affected]).decode()


def dispatch(org_id: int, now_ms: int, limit: int = BATCH) -> Flow[Dispatched]:
    """Turn the next `limit` journal events of an org into delivery rows."""
    claimed = yield Query("claim_dispatch", (org_id,), "val")
    if not claimed:
        return Dispatched(0, 0, (), False)
    row = yield Query("dispatch_cursor", (org_id,), "one")
    last_seq, view = (int(row[0]), orjson.loads(row[1])) if row else (0, {})
    rows = yield Query("events_after", (org_id, last_seq, limit), "all")
    if not rows:
        return Dispatched(0, 0, (), False)
    channels = {cid: Channel.from_doc(doc) for cid, doc in view.get("channels", {}).items()}
    seqs: dict[str, int] = view.get("seqs", {})
    owed: list[Notification] = []
    segment: list[Event] = []
    for r in rows:
        if r[1] == CHANNEL_MODULE:
            owed.extend(match(segment, channels))
            segment = []
            doc = orjson.loads(r[5])
            if doc is None:
                channels.pop(str(r[2]), None)
            else:
                channels[str(r[2])] = Channel.from_doc(doc)
        else:
            segment.append(_event(r))
    owed.extend(match(segment, channels))
    args = []
    for n in owed:
        seq = seqs.get(n.channel_id, 0) + 1
        seqs[n.channel_id] = seq
        args.append((org_id, n.channel_id, "msg_" + uuid.uuid4().hex, seq, n.module,
                     n.operation, orjson.dumps(list(n.ids)).decode(), _affected(n), n.related,
                     n.first_seq, n.last_seq, now_ms))
    if args:
        yield Query("insert_delivery", args, "many")
    new_view = {"channels": {cid: c.to_doc() for cid, c in channels.items()},
                "seqs": {cid: s for cid, s in seqs.items()}}
    yield Query("put_dispatch_cursor", (org_id, int(rows[-1][0]),
                                        orjson.dumps(new_view).decode()))
    return Dispatched(len(rows), len(args), tuple(sorted({n.channel_id for n in owed})),
                      len(rows) == limit)


def behind(org_id: int) -> Flow[bool]:
    """True when the org's journal has events the dispatcher has not folded yet."""
    value = yield Query("dispatch_behind", (org_id,), "val")
    return bool(value)


def org_ids() -> Flow[list[int]]:
    rows = yield Query("org_ids", (), "all")
    return [int(r[0]) for r in rows]
