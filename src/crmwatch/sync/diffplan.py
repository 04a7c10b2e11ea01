"""What `sync verify` asks next: bisection over digest buckets, pure (no I/O).

One round: the source answered buckets for a range (`crmwatch.digest`, docs/digest.md); the
mirror's records over the same range are put into the same buckets (`mirror_buckets`); then
`compare` names the ids it can already name (a differing single-record bucket, a mirror
record in no bucket) and the ranges to ask again, adjacent ones merged while their records
fit one per-record answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from crmwatch.digest import BucketHasher, id_key

MISSING, EXTRA, STALE = "missing", "extra", "stale"
KINDS = (MISSING, EXTRA, STALE)
"""missing: at the source, not in the mirror; extra: in the mirror only; stale: in both,
with a different hash."""


@dataclass(frozen=True, slots=True)
class Bucket:
    from_id: str
    to_id: str
    count: int
    hash: str


@dataclass(frozen=True, slots=True)
class Ask:
    """A digest request: ids `[from_id, to_id]` (None: open) in at most `buckets` buckets."""

    from_id: str | None
    to_id: str | None
    buckets: int


@dataclass(frozen=True, slots=True)
class Difference:
    id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Step:
    differences: list[Difference] = field(default_factory=list)
    asks: list[Ask] = field(default_factory=list)


class MirrorBuckets:
    """The mirror's records, fed `(id, record hash)` in ascending id order, put into the
    source's buckets: one mirror bucket per source bucket (same bounds), and the ids that
    fall in none."""

    def __init__(self, source: Sequence[Bucket]) -> None:
        self.source = source
        self._hashers = [BucketHasher(()) for _ in source]
        self._at = 0
        self.outside: list[str] = []

    def add(self, rid: str, h: bytes) -> None:
        k = id_key(rid)
        source = self.source
        while self._at < len(source) and id_key(source[self._at].to_id) < k:
            self._at += 1
        if self._at < len(source) and id_key(source[self._at].from_id) <= k:
            self._hashers[self._at].add_hash(rid, h)
        else:
            self.outside.append(rid)

    def buckets(self) -> list[Bucket]:
        return [Bucket(s.from_id, s.to_id, b.count, b.hexdigest())
                for s, b in zip(self.source, self._hashers, strict=True)]


def mirror_buckets(source: Sequence[Bucket], rows: Iterable[tuple[str, bytes]],
                   ) -> tuple[list[Bucket], list[str]]:
    """`MirrorBuckets` over all of `rows` at once: (mirror buckets, ids outside)."""
    into = MirrorBuckets(source)
    for rid, h in rows:
        into.add(rid, h)
    return into.buckets(), into.outside


def compare(source: Sequence[Bucket], mirror: Sequence[Bucket], outside: Sequence[str], *,
            fanout: int, per_record: int) -> Step:
    """Differences named by this round, and the asks of the next.

    A differing bucket of one record names its id (missing when the mirror has none, else
    stale); mirror ids outside every bucket are extra. A differing bucket of more records is
    asked again: per record (`buckets=per_record`) when it holds at most `per_record`
    records, merged with differing neighbours while the sum stays within that, else split
    into `fanout` buckets.
    """
    step = Step([Difference(i, EXTRA) for i in outside])
    run: list[Bucket] = []

    def flush() -> None:
        if run:
            step.asks.append(Ask(run[0].from_id, run[-1].to_id, per_record))
            run.clear()

    for s, m in zip(source, mirror, strict=True):
        if (s.count, s.hash) == (m.count, m.hash):
            flush()
            continue
        if s.count == 1 and s.from_id == s.to_id:
            flush()
            step.differences.append(Difference(s.from_id, MISSING if m.count == 0 else STALE))
        elif s.count > per_record:
            flush()
            step.asks.append(Ask(s.from_id, s.to_id, fanout))
        else:
            if sum(b.count for b in run) + s.count > per_record:
                flush()
            run.append(s)
    flush()
    return step


def sort_differences(found: Iterable[Difference]) -> list[Difference]:
    """In numeric id order, each id once (the first kind seen)."""
    seen: dict[str, Difference] = {}
    for d in found:
        seen.setdefault(d.id, d)
    return sorted(seen.values(), key=lambda d: id_key(d.id))


def classify(ids: Iterable[str], source: dict[str, bytes], mirror: dict[str, bytes]
             ) -> list[Difference]:
    """Record hashes of both sides by id (absent: not there) -> the differences among `ids`."""
    out = []
    for i in ids:
        s, m = source.get(i), mirror.get(i)
        if s is None and m is not None:
            out.append(Difference(i, EXTRA))
        elif s is not None and m is None:
            out.append(Difference(i, MISSING))
        elif s is not None and s != m:
            out.append(Difference(i, STALE))
    return sort_differences(out)


def merge_join(source: Iterable[tuple[str, bytes]], mirror: Iterable[tuple[str, bytes]]
               ) -> list[Difference]:
    """Two ascending streams of `(id, record hash)` -> the ids that differ."""
    out: list[Difference] = []
    s_it, m_it = iter(source), iter(mirror)
    s, m = next(s_it, None), next(m_it, None)
    while s is not None or m is not None:
        if m is None or (s is not None and id_key(s[0]) < id_key(m[0])):
            assert s is not None
            out.append(Difference(s[0], MISSING))
            s = next(s_it, None)
        elif s is None or id_key(m[0]) < id_key(s[0]):
            out.append(Difference(m[0], EXTRA))
            m = next(m_it, None)
        else:
            if s[1] != m[1]:
                out.append(Difference(s[0], STALE))
            s, m = next(s_it, None), next(m_it, None)
    return out
