"""States of deliveries and bulk-read jobs, and the moves allowed between them. Pure.

The store calls `check_transition(old, new)` before writing a state.

Delivery:
    pending -> sending -> delivered
                       -> retrying -> sending ...
                       -> dead            (retry window over, or a permanent failure)
    pending | sending | retrying -> cancelled   (the channel was deleted)
    dead | delivered -> pending                 (an explicit replay: the same row again)

Bulk-read job (Zoho's spellings, `IN PROGRESS` with a space):
    ADDED -> IN PROGRESS -> COMPLETED | FAILURE
    ADDED -> FAILURE
    IN PROGRESS -> ADDED                        (given back by a runner that stops)
    IN PROGRESS -> IN PROGRESS                  (taken over after its runner's lease lapsed)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum


class DeliveryState(Enum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"
    CANCELLED = "cancelled"


class BulkState(Enum):
    ADDED = "ADDED"
    IN_PROGRESS = "IN PROGRESS"
    COMPLETED = "COMPLETED"
    FAILURE = "FAILURE"


_D = DeliveryState
DELIVERY_TRANSITIONS: Mapping[DeliveryState, frozenset[DeliveryState]] = {
    _D.PENDING: frozenset({_D.SENDING, _D.CANCELLED}),
    _D.SENDING: frozenset({_D.DELIVERED, _D.RETRYING, _D.DEAD, _D.CANCELLED}),
    _D.RETRYING: frozenset({_D.SENDING, _D.CANCELLED}),
    _D.DELIVERED: frozenset({_D.PENDING}),
    _D.DEAD: frozenset({_D.PENDING}),
    _D.CANCELLED: frozenset(),
}
_B = BulkState
BULK_TRANSITIONS: Mapping[BulkState, frozenset[BulkState]] = {
    _B.ADDED: frozenset({_B.IN_PROGRESS, _B.FAILURE}),
    _B.IN_PROGRESS: frozenset({_B.COMPLETED, _B.FAILURE, _B.ADDED, _B.IN_PROGRESS}),
    _B.COMPLETED: frozenset(),
    _B.FAILURE: frozenset(),
}
FINAL: frozenset[DeliveryState | BulkState] = frozenset({
    _D.DELIVERED, _D.DEAD, _D.CANCELLED, _B.COMPLETED, _B.FAILURE})
"""States no worker moves on from by itself (only a replay leaves dead or delivered)."""


def allowed(old: DeliveryState | BulkState) -> frozenset[DeliveryState | BulkState]:
    """The states `old` may move to."""
    if isinstance(old, DeliveryState):
        return frozenset(DELIVERY_TRANSITIONS[old])
    return frozenset(BULK_TRANSITIONS[old])


def check_transition(old: DeliveryState | BulkState, new: DeliveryState | BulkState) -> None:
    """Raise ValueError unless `old -> new` is an allowed move."""
    if new not in allowed(old):
        raise ValueError(f"cannot move from {old.value!r} to {new.value!r}")
