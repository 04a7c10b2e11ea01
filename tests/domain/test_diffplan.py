"""Bisection planning of `sync verify` (crmwatch.sync.diffplan), against a simulated source."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from crmwatch.digest import BucketHasher, id_key, split_counts
from crmwatch.sync import diffplan
from crmwatch.sync.diffplan import Ask, Bucket, Difference, compare, mirror_buckets


def h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def source_digest(rows: list[tuple[str, bytes]], ask: Ask) -> list[Bucket]:
    """What the server answers for `ask` over `rows` (ascending): docs/digest.md."""
    inside = [(i, x) for i, x in rows
              if (ask.from_id is None or id_key(i) >= id_key(ask.from_id))
              and (ask.to_id is None or id_key(i) <= id_key(ask.to_id))]
    out, at = [], 0
    for size in split_counts(len(inside), ask.buckets):
        b = BucketHasher(())
        for i, x in inside[at:at + size]:
            b.add_hash(i, x)
        out.append(Bucket(inside[at][0], inside[at + size - 1][0], size, b.hexdigest()))
        at += size
    return out


def bisect(source: list[tuple[str, bytes]], mirror: list[tuple[str, bytes]], *,
           fanout: int, per_record: int) -> tuple[list[Difference], int]:
    """The verify loop over the pure pieces; (differences, requests made)."""
    asks = [Ask(None, None, fanout)]
    found: list[Difference] = []
    requests = 0
    while asks:
        ask = asks.pop()
        requests += 1
        buckets = source_digest(source, ask)
        rows = [(i, x) for i, x in mirror
                if (ask.from_id is None or id_key(i) >= id_key(ask.from_id))
                and (ask.to_id is None or id_key(i) <= id_key(ask.to_id))]
        theirs, outside = mirror_buckets(buckets, rows)
        step = compare(buckets, theirs, outside, fanout=fanout, per_record=per_record)
        found += step.differences
        asks += step.asks
    return diffplan.sort_differences(found), requests


ids_strategy = st.lists(st.integers(min_value=1, max_value=10**6), unique=True,
                        max_size=300).map(lambda xs: sorted(map(str, xs), key=id_key))


class TestCompare:
    """One round names what it can and asks again only where buckets differ."""

    def test_equal_asks_nothing(self) -> None:
        rows = [(str(i), h(str(i))) for i in range(1, 50)]
        buckets = source_digest(rows, Ask(None, None, 7))
        mine, outside = mirror_buckets(buckets, rows)
        assert mine == buckets and outside == []
        assert compare(buckets, mine, outside, fanout=7, per_record=10) == diffplan.Step()

    def test_single_record_buckets_name_ids(self) -> None:
        source = [("1", h("a")), ("2", h("b")), ("3", h("c"))]
        mirror = [("1", h("a")), ("2", h("B")), ("4", h("d"))]
        buckets = source_digest(source, Ask(None, None, 10))
        mine, outside = mirror_buckets(buckets, mirror)
        assert outside == ["4"]
        step = compare(buckets, mine, outside, fanout=10, per_record=10)
        assert step.asks == []
        assert diffplan.sort_differences(step.differences) == [
            Difference("2", "stale"), Difference("3", "missing"), Difference("4", "extra")]

    def test_adjacent_merged_within_per_record(self) -> None:
        source = [(str(i), h(str(i))) for i in range(1, 41)]  # 40 records, 8 buckets of 5
        mirror = [(i, x if i not in ("7", "12", "38") else h("x")) for i, x in source]
        buckets = source_digest(source, Ask(None, None, 8))
        mine, outside = mirror_buckets(buckets, mirror)
        step = compare(buckets, mine, outside, fanout=8, per_record=10)
        # buckets 2 (6-10) and 3 (11-15) differ and merge; bucket 8 (36-40) alone
        assert step.asks == [Ask("6", "15", 10), Ask("36", "40", 10)]
        tight = compare(buckets, mine, outside, fanout=8, per_record=5)
        assert tight.asks == [Ask("6", "10", 5), Ask("11", "15", 5), Ask("36", "40", 5)]
        big = compare(buckets, mine, outside, fanout=8, per_record=4)
        assert big.asks == [Ask("6", "10", 8), Ask("11", "15", 8), Ask("36", "40", 8)]

    def test_mirror_gap_ids_are_extra(self) -> None:
        source = [("10", h("a")), ("20", h("b")), ("30", h("c")), ("40", h("d"))]
        mirror = [("5", h("z")), *source[:2], ("25", h("y")), *source[2:], ("99", h("w"))]
        buckets = source_digest(source, Ask(None, None, 2))  # [10..20], [30..40]
        mine, outside = mirror_buckets(buckets, mirror)
        assert outside == ["5", "25", "99"]
        assert mine == buckets

    def test_empty_source(self) -> None:
        mine, outside = mirror_buckets([], [("1", h("a"))])
        assert (mine, outside) == ([], ["1"])
        assert compare([], [], outside, fanout=2, per_record=2).differences == [
            Difference("1", "extra")]


class TestBisection:
    """The loop finds exactly the differing ids, in about 1 + k requests per level."""

    @settings(max_examples=150, deadline=None)
    @given(ids_strategy, st.data(), st.integers(min_value=2, max_value=16),
           st.integers(min_value=1, max_value=40))
    def test_finds_exactly(self, ids: list[str], data: st.DataObject, fanout: int,
                           per_record: int) -> None:
        source = [(i, h(i)) for i in ids]
        drop = data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set()))
        change = data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set())) - drop
        extra_ids = data.draw(st.sets(st.integers(min_value=1, max_value=10**6).map(str)))
        extra_ids -= set(ids)
        mirror = sorted([(i, h(i + "!") if i in change else x) for i, x in source
                         if i not in drop] + [(i, h(i)) for i in extra_ids],
                        key=lambda r: id_key(r[0]))
        found, _requests = bisect(source, mirror, fanout=fanout, per_record=per_record)
        expected = diffplan.sort_differences(
            [Difference(i, "missing") for i in drop] + [Difference(i, "stale") for i in change]
            + [Difference(i, "extra") for i in extra_ids])
        assert found == expected

    def test_request_count(self) -> None:
        """10,000 records, fanout 100, per-record answers up to 100: 1 + k requests."""
        source = [(str(i), h(str(i))) for i in range(1, 10_001)]
        changed = {"17", "4500", "9999"}
        mirror = [(i, h("x") if i in changed else x) for i, x in source]
        found, requests = bisect(source, mirror, fanout=100, per_record=100)
        assert [d.id for d in found] == ["17", "4500", "9999"]
        assert requests == 1 + 3
        found, requests = bisect(source, source, fanout=100, per_record=100)
        assert (found, requests) == ([], 1)


class TestJoins:
    """Record-by-record comparison (the records-API path) names the same differences."""

    def test_merge_join(self) -> None:
        s = [("1", h("a")), ("3", h("c")), ("10", h("j"))]
        m = [("2", h("b")), ("3", h("C")), ("10", h("j")), ("11", h("k"))]
        assert diffplan.merge_join(s, m) == [
            Difference("1", "missing"), Difference("2", "extra"), Difference("3", "stale"),
            Difference("11", "extra")]
        assert diffplan.merge_join([], []) == []

    def test_classify(self) -> None:
        assert diffplan.classify(["9", "1", "5", "7"], {"1": h("a"), "5": h("e"), "9": h("i")},
                                 {"5": h("E"), "7": h("g"), "9": h("i")}) == [
            Difference("1", "missing"), Difference("5", "stale"), Difference("7", "extra")]
