"""Flows for notification channels. Every change is also a journal event (module `$channel`),
so the dispatcher meets each record change with the channels as they stood at its commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from crmwatch.domain import channels as ch
from crmwatch.domain.channels import Channel, ChannelInput
from crmwatch.domain.errors import NotSubscribed, ZohoError
from crmwatch.store.base import Emit, Flow, Query

CHANNEL_MODULE = "$channel"
"""The journal module of channel events; `vals` is the channel's doc, or null once deleted."""

Outcome = tuple[ChannelInput, Channel | None] | ZohoError


def _load(org_id: int, channel_id: str) -> Flow[Channel | None]:
    row = yield Query("channels_for_update", (org_id, channel_id), "one")
    return None if row is None else Channel.from_doc(orjson.loads(row[1]))


def _store(org_id: int, channel_id: str, channel: Channel | None, now_ms: int, batch: int,
           user_id: int) -> Flow[None]:
    if channel is None:
        yield Query("drop_channel", (org_id, channel_id))
        yield Query("cancel_channel_deliveries", (org_id, channel_id, now_ms))
        doc = "null"
    else:
        doc = orjson.dumps(channel.to_doc()).decode()
        yield Query("put_channel", (org_id, channel_id, doc, channel.expiry_ms, now_ms))
    yield Emit(org_id, CHANNEL_MODULE, int(channel_id), "channel", "[]", doc, "{}", batch,
               now_ms, user_id)


def write_channels(org_id: int, inputs: Sequence[ChannelInput | ZohoError], now_ms: int,
                   batch: int, user_id: int, *, max_channels: int = 0) -> Flow[list[Outcome]]:
    """Apply POST/PUT/PATCH items in order; one outcome (or error) per item. With
    `max_channels`, an item that would make the org's live channels more is refused."""
    yield Query("lock_org_channels", (org_id,), "none")
    live = (yield Query("count_live_channels", (org_id, now_ms), "val")) if max_channels else 0
    out: list[Outcome] = []
    for inp in inputs:
        if isinstance(inp, ZohoError):
            out.append(inp)
            continue
        existing = yield from _load(org_id, inp.channel_id)
        try:
            new = ch.apply(existing, inp, now_ms)
        except ZohoError as err:
            out.append(err)
            continue
        if new is None and existing is None:
            out.append(NotSubscribed())
            continue
        was_live = existing is not None and existing.is_live(now_ms)
        if max_channels and new is not None and not was_live:
            if int(live) >= max_channels:
                out.append(ch.too_many_channels(inp, max_channels))
                continue
            live = int(live) + 1
        elif max_channels and new is None and was_live:
            live = int(live) - 1
        yield from _store(org_id, inp.channel_id, new, now_ms, batch, user_id)
        out.append((inp, new))
    return out


def delete_channels(org_id: int, channel_ids: Sequence[str], now_ms: int, batch: int,
                    user_id: int) -> Flow[list[Channel | ZohoError]]:
    """Remove channels (expired ones too); NOT_SUBSCRIBED for an unknown id."""
    yield Query("lock_org_channels", (org_id,), "none")
    out: list[Channel | ZohoError] = []
    for cid in channel_ids:
        existing = yield from _load(org_id, cid)
        if existing is None:
            out.append(NotSubscribed(channel_id=cid))
            continue
        yield from _store(org_id, cid, None, now_ms, batch, user_id)
        out.append(existing)
    return out


def list_channels(org_id: int) -> Flow[list[Channel]]:
    rows = yield Query("list_channels", (org_id,), "all")
    return [Channel.from_doc(orjson.loads(r[1])) for r in rows]


def get_channel(org_id: int, channel_id: str) -> Flow[Channel | None]:
    doc = yield Query("get_channel_doc", (org_id, channel_id), "val")
    return None if doc is None else Channel.from_doc(orjson.loads(doc))


def channel_doc(channel: Channel | None) -> Any:
    return None if channel is None else channel.to_doc()
