"""States: the allowed moves of deliveries and bulk-read jobs."""

from __future__ import annotations

import itertools

import pytest

from crmwatch.domain.states import (
    BULK_TRANSITIONS,
    DELIVERY_TRANSITIONS,
    FINAL,
    BulkState,
    DeliveryState,
    allowed,
    check_transition,
)

D = DeliveryState
B = BulkState


class TestDelivery:
    """A delivery goes pending -> sending -> delivered, or retries until dead."""

    def test_happy_path(self) -> None:
        for old, new in [(D.PENDING, D.SENDING), (D.SENDING, D.DELIVERED)]:
            check_transition(old, new)

    def test_retry_loop_and_death(self) -> None:
        for old, new in [(D.SENDING, D.RETRYING), (D.RETRYING, D.SENDING),
                         (D.SENDING, D.DEAD)]:
            check_transition(old, new)

    def test_cancel_while_not_finished(self) -> None:
        for old in (D.PENDING, D.SENDING, D.RETRYING):
            check_transition(old, D.CANCELLED)

    def test_replay(self) -> None:
        check_transition(D.DEAD, D.PENDING)
        check_transition(D.DELIVERED, D.PENDING)

    @pytest.mark.parametrize("old,new", [
        (D.PENDING, D.DELIVERED), (D.PENDING, D.DEAD), (D.RETRYING, D.DELIVERED),
        (D.DELIVERED, D.SENDING), (D.DEAD, D.SENDING), (D.CANCELLED, D.PENDING),
        (D.SENDING, D.SENDING), (D.PENDING, D.PENDING)])
    def test_refused(self, old: DeliveryState, new: DeliveryState) -> None:
        with pytest.raises(ValueError, match="cannot move"):
            check_transition(old, new)

    def test_every_pair_follows_the_table(self) -> None:
        for old, new in itertools.product(D, D):
            if new in DELIVERY_TRANSITIONS[old]:
                check_transition(old, new)
            else:
                with pytest.raises(ValueError):
                    check_transition(old, new)

    def test_names(self) -> None:
        assert [s.value for s in D] == ["pending", "sending", "delivered", "retrying", "dead",
                                        "cancelled"]


class TestBulk:
    """A bulk-read job goes ADDED -> IN PROGRESS -> COMPLETED or FAILURE."""

    def test_paths(self) -> None:
        for old, new in [(B.ADDED, B.IN_PROGRESS), (B.IN_PROGRESS, B.COMPLETED),
                         (B.IN_PROGRESS, B.FAILURE), (B.ADDED, B.FAILURE),
                         (B.IN_PROGRESS, B.ADDED), (B.IN_PROGRESS, B.IN_PROGRESS)]:
            check_transition(old, new)

    def test_finished_jobs_stay_finished(self) -> None:
        for old, new in itertools.product((B.COMPLETED, B.FAILURE), B):
            with pytest.raises(ValueError):
                check_transition(old, new)

    def test_every_pair_follows_the_table(self) -> None:
        for old, new in itertools.product(B, B):
            if new in BULK_TRANSITIONS[old]:
                check_transition(old, new)
            else:
                with pytest.raises(ValueError):
                    check_transition(old, new)

    def test_zoho_spellings(self) -> None:
        assert [s.value for s in B] == ["ADDED", "IN PROGRESS", "COMPLETED", "FAILURE"]
        assert BulkState("IN PROGRESS") is B.IN_PROGRESS


class TestTables:
    """Both tables cover every state, and the two families never mix."""

    def test_complete(self) -> None:
        assert set(DELIVERY_TRANSITIONS) == set(D)
        assert set(BULK_TRANSITIONS) == set(B)

    def test_no_mixing(self) -> None:
        with pytest.raises(ValueError):
            check_transition(D.PENDING, B.ADDED)
        with pytest.raises(ValueError):
            check_transition(B.ADDED, D.PENDING)

    def test_final_states_only_leave_by_replay(self) -> None:
        for state in FINAL:
            assert allowed(state) <= {D.PENDING}
        assert allowed(B.COMPLETED) == frozenset()
