"""The storage seam: one interface, two backends (SQLite, PostgreSQL).

Business logic that touches the database is written once, as *flows*: generators that yield
`Query` (and a few backend-native operations) and receive their results, as httpx's
`Auth.auth_flow` does for requests. Each backend drives a flow with its own driver, inside
one transaction for writes, so the logic never depends on a driver and never does I/O itself.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")

Mode = Literal["none", "one", "all", "val", "many"]


@dataclass(frozen=True, slots=True)
class Query:
    """A named SQL block (see store/sql/*.sql) with its arguments.

    mode: none -> None; one -> a row or None; all -> list of rows; val -> first column of the
    first row or None; many -> executemany over `args` (a list of argument tuples).
    """

    name: str
    args: tuple[Any, ...] | list[tuple[Any, ...]] = ()
    mode: Mode = "none"


@dataclass(frozen=True, slots=True)
class NextIds:
    """Reserve `count` values of the global id counter; receives a list of ints."""

    count: int


@dataclass(frozen=True, slots=True)
class Emit:
    """Append one event to the org's change journal (same transaction); receives None."""

    org_id: int
    module: str
    record_id: int
    operation: str  # insert | update | delete
    changed: str  # JSON list of changed field names
    values: str  # JSON object of new values (stored form)
    related: str  # JSON object: lookup target module -> [record ids] of the record
    batch: int  # the same for every event of one API call
    time_ms: int
    user_id: int


@dataclass(frozen=True, slots=True)
class Dynamic:
    """A query whose SQL text is built per call (criteria), for the backend's dialect.

    `build(dialect, param_start)` returns the SQL text and its arguments.
    """

    build: Any
    mode: Mode = "all"


@dataclass(frozen=True, slots=True)
class Savepoint:
    """Mark, undo or keep a part of a write flow (SQL savepoints); receives None.

    `begin` opens a savepoint; `rollback` undoes everything since it and closes it; `release`
    keeps that work and closes it. A refused record of a batch is rolled back this way,
    so that nothing of it (rows, journal events, ids) commits with the rest.
    """

    action: Literal["begin", "rollback", "release"]


Op = Query | NextIds | Emit | Dynamic | Savepoint
Flow = Generator[Op, Any, T]


class StoreError(Exception):
    """The database failed; the message says how (nothing of the request was written)."""


class Conflict(StoreError):
    """A uniqueness rule was broken."""


class BudgetExceeded(StoreError):
    """A write flow ran longer than its time budget and was rolled back whole."""

    def __init__(self, budget_ms: int) -> None:
        super().__init__(f"the write took longer than {budget_ms} ms and was rolled back")
        self.budget_ms = budget_ms


class Store(Protocol):
    """What the server needs from a database."""

    dialect: str

    async def migrate(self) -> None: ...

    async def write(self, flow: Flow[T], *, budget_ms: int = 0) -> T:
        """Run a flow in one transaction; commit, or roll back everything on an exception.

        With `budget_ms` > 0, a flow still running that long after it started (queueing
        does not count) is stopped, rolled back, and raises BudgetExceeded: checked between
        its operations, and a statement running past it is interrupted."""
        ...

    async def read(self, flow: Flow[T]) -> T:
        """Run a flow that only reads."""
        ...

    async def sync_journal(self) -> None:
        """Return once every event committed before the call has its sequence number."""
        ...

    async def start(self) -> None:
        """Start background work (the writer thread, the journal sequencer)."""
        ...

    async def close(self) -> None: ...


def run_sync(flow: Flow[T], execute: Any) -> T:
    """Drive a flow with a synchronous `execute(op) -> result`."""
    try:
        op = next(flow)
        while True:
            op = flow.send(execute(op))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
