"""The mirror store on both databases: the CSV rule inside one transaction, deletions,
inbox, iteration in numeric id order, new columns."""

from __future__ import annotations

import asyncio
from typing import Any

from crmwatch.sync import cells
from crmwatch.sync.mirror import open_mirror

SPECS = [cells.FieldSpec("id", "bigint"), cells.FieldSpec("Modified_Time", "datetime"),
         cells.FieldSpec("Company", "text"), cells.FieldSpec("N", "integer")]


def rec(i: str, t: str, company: str, n: int = 1) -> dict[str, Any]:
    return {"id": i, "Modified_Time": t, "Company": company, "N": n}


class TestMirrorStore:
    """Snapshot rows lose to newer fetched rows and to deletions; ties are read again."""

    def test_csv_rule_and_deletions(self, mirror_url: str) -> None:
        async def go() -> None:
            m = await open_mirror(mirror_url)
            try:
                await m.ensure_module("Leads", SPECS)
                t0, t1 = "2026-01-01T00:00:00-08:00", "2026-01-01T00:00:01-08:00"
                await m.apply_fetched("Leads", [rec("10", t1, "fetched"), rec("11", t0, "a")])
                await m.apply_deleted("Leads", ["12"], "2026-01-01T00:00:02-08:00")
                rows = [(rec("10", t0, "old csv"), True), (rec("11", t0, "tie"), True),
                        (rec("12", t0, "deleted"), True), (rec("13", t0, "new"), True),
                        (rec("14", t0, "needs lookup names"), False),
                        (rec("15", t0, "window"), True)]
                written, reread = await m.apply_snapshot("Leads", rows, frozenset({"15"}))
                assert written == 1 and sorted(reread) == ["11", "14"]
                got = {i: r["Company"] async for i, r in m.iter_records("Leads")}
                assert got == {"10": "fetched", "11": "a", "13": "new"}
                assert await m.db.read("SELECT module, id, deleted_time FROM _deleted") == [
                    ("Leads", "12", "2026-01-01T00:00:02-08:00")]
            finally:
                await m.close()
        asyncio.run(go())

    def test_numeric_order_ranges_and_new_columns(self, mirror_url: str) -> None:
        async def go() -> None:
            m = await open_mirror(mirror_url)
            try:
                await m.ensure_module("Leads", SPECS)
                ids = ["9", "10", "100", "11", "2"]
                await m.apply_fetched("Leads", [rec(i, "2026-01-01T00:00:00Z", i) for i in ids])
                assert [i async for i, _ in m.iter_records("Leads", batch=2)] == [
                    "2", "9", "10", "11", "100"]
                assert [i async for i, _ in m.iter_records("Leads", "9", "11")] == [
                    "9", "10", "11"]
                added = await m.ensure_module("Leads", [*SPECS, cells.FieldSpec("X", "text")])
                assert added == ["X"]
                assert await m.mirrored_fields("Leads") == ["id", "Modified_Time", "Company",
                                                            "N", "X"]
                assert [r["X"] async for _, r in m.iter_records("Leads")] == [None] * 5
                await m.enqueue("Leads", "update", ["9"], 4)
                await m.enqueue("Leads", "update", ["10"], 3)
                items = await m.take_inbox()
                assert [i.ids for i in items] == [["9"], ["10"]]
                await m.apply("Leads", [], ["9"], None, inbox=[items[0].n])
                assert await m.inbox_size() == 1
                assert (await m.counters())["channel_seq"] == 4
            finally:
                await m.close()
        asyncio.run(go())
