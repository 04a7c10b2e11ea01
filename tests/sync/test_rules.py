"""The sync's pure rules: reconcile.py, cells.py, signature.py, receiver.parse."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.sync import cells, reconcile, signature
from crmwatch.sync.receiver import Refused, parse
from crmwatch.sync.reconcile import SeqTracker, Verdict, csv_verdict


def rec(t: str, **values: object) -> dict[str, object]:
    return {"id": "1", "Modified_Time": t, **values}


class TestCsvVerdict:
    """A CSV row is written only when newer; equal times with other values are read again."""

    def test_absent_is_written(self) -> None:
        assert csv_verdict(rec("2026-01-01T00:00:00+00:00"), None, deleted=False,
                           changed_in_window=False) is Verdict.WRITE

    def test_newer_older_equal(self) -> None:
        old, new = rec("2026-01-01T00:00:00-08:00", A=1), rec("2026-01-01T00:00:01-08:00", A=2)
        assert csv_verdict(new, old, deleted=False, changed_in_window=False) is Verdict.WRITE
        assert csv_verdict(old, new, deleted=False, changed_in_window=False) is Verdict.SKIP
        assert csv_verdict(old, dict(old), deleted=False, changed_in_window=False) is Verdict.SKIP
        same_second = rec("2026-01-01T00:00:00-08:00", A=3)
        assert csv_verdict(same_second, old, deleted=False,
                           changed_in_window=False) is Verdict.REREAD

    def test_instants_not_text(self) -> None:
        # 01:30-07:00 (PDT) is earlier than 01:10-08:00 (PST) on the night clocks go back
        pdt, pst = rec("2026-11-01T01:30:00-07:00"), rec("2026-11-01T01:10:00-08:00")
        assert csv_verdict(pst, pdt, deleted=False, changed_in_window=False) is Verdict.WRITE

    def test_deleted_and_window_never_written(self) -> None:
        row = rec("2030-01-01T00:00:00+00:00")
        assert csv_verdict(row, None, deleted=True, changed_in_window=False) is Verdict.SKIP
        assert csv_verdict(row, None, deleted=False, changed_in_window=True) is Verdict.SKIP

    def test_fetched_split(self) -> None:
        records, missing = reconcile.fetched_split(["1", "2", "2", "3"], [{"id": "2"}])
        assert records == [{"id": "2"}] and missing == ["1", "3"]


class TestSeqTracker:
    """Out-of-order arrival is not a gap; a hole that lasts past the grace period is."""

    def test_in_order_and_out_of_order(self) -> None:
        t = SeqTracker().add(1, 0, 0.0).add(3, 2, 0.0)
        assert t.done == 1 and t.seen == {3} and not t.gap(0.5, 1.0)
        t = t.add(2, 1, 0.6)
        assert t.done == 3 and not t.seen and not t.gap(5.0, 1.0)

    def test_lasting_hole_is_a_gap(self) -> None:
        t = SeqTracker().add(1, 0, 0.0).add(5, 4, 0.0)
        assert t.gap(2.0, 1.0)
        assert not t.closed().gap(10.0, 1.0) and t.closed().done == 5

    def test_restart_continues(self) -> None:
        t = reconcile.restart_tracker(10).add(12, 11, 0.0)
        assert t.done == 10 and t.gap(3.0, 1.0)

    @given(st.permutations(list(range(1, 30))))
    def test_any_order_of_all_closes(self, order: list[int]) -> None:
        t = reconcile.restart_tracker(0)
        for s in order:
            t = t.add(s, s - 1, 0.0)
        assert t.done == 29 and not t.seen and t.missing_since is None


class TestRenewal:
    """Renew when most of the lifetime passed, never later than five minutes before."""

    def test_week(self) -> None:
        week = 7 * 86400.0
        at = reconcile.renew_at(0.0, week)
        assert at == week * 0.8

    def test_short_lifetimes(self) -> None:
        assert reconcile.renew_at(0.0, 1000.0) == 700.0  # 5 min before, not 80 %
        assert reconcile.renew_at(0.0, 200.0) == 100.0   # shorter than the margin: half

    @given(st.floats(1.0, 10**7))
    def test_always_before_expiry(self, lifetime: float) -> None:
        at = reconcile.renew_at(100.0, 100.0 + lifetime)
        assert 100.0 < at < 100.0 + lifetime
        if lifetime > 2 * reconcile.RENEW_MARGIN_S:
            assert at <= 100.0 + lifetime - reconcile.RENEW_MARGIN_S

    def test_catchup_since(self) -> None:
        t = datetime(2026, 1, 1, tzinfo=UTC)
        assert reconcile.catchup_since(t, timedelta(minutes=2)) == t - timedelta(minutes=2)
        assert reconcile.catchup_since(None, timedelta(1)) is None
        assert reconcile.zoho_datetime(t.replace(microsecond=5)) == "2026-01-01T00:00:00+00:00"



BASE = datetime(2026, 11, 1, 1, 0, tzinfo=timezone(timedelta(hours=-8)))


def at(second: int) -> str:
    return (BASE + timedelta(seconds=second)).isoformat()


class TokenRefused(Exception):
    pass


class ZohoListing:
    """A model of Zoho's `GET /{M}` with If-Modified-Since, sorted by Modified_Time ascending
    (ties by id), offset page tokens refused past `limit` records."""

    def __init__(self, times: dict[int, int], per_page: int, limit: int) -> None:
        self.times, self.per_page, self.limit = dict(times), per_page, limit
        self.requests = 0

    def get(self, listing: reconcile.Listing) -> tuple[list[dict[str, Any]], bool, str | None]:
        self.requests += 1
        since = reconcile.instant(listing.since)
        rows = sorted((t, i) for i, t in self.times.items()
                      if since is None or BASE + timedelta(seconds=t) >= since)
        offset = 0
        if listing.page_token:
            token_since, raw = listing.page_token.split("|")
            assert token_since == str(listing.since)  # a token is bound to its parameters
            offset = int(raw)
            if offset >= self.limit:
                raise TokenRefused
        page = rows[offset:offset + self.per_page]
        more = offset + self.per_page < len(rows)
        token = f"{listing.since}|{offset + self.per_page}" if more else None
        return [{"id": str(i), "Modified_Time": at(t)} for t, i in page], more, token


def catch_up(server: ZohoListing, since: str | None,
             meanwhile: Callable[[], None] = lambda: None) -> tuple[dict[str, str], list[str]]:
    """The sync's loop over listing_after / listing_stuck: what it read (id -> Modified_Time)
    and the seconds it could not list whole."""
    read: dict[str, str] = {}
    stuck: list[str] = []
    step: reconcile.Listing | reconcile.Stuck | None = reconcile.Listing(since)
    while isinstance(step, reconcile.Listing):
        assert server.requests < 10_000
        try:
            page, more, token = server.get(step)
        except TokenRefused:
            step = reconcile.listing_stuck(step)
        else:
            read.update((r["id"], r["Modified_Time"]) for r in page)
            step = reconcile.listing_after(step, page, more, token)
        if isinstance(step, reconcile.Stuck):
            stuck.append(step.at)
            step = reconcile.Listing(step.resume)
        meanwhile()
    return read, stuck


class TestZohoListing:
    """The Zoho catch-up lists in windows by Modified_Time: past the page-token limit, and
    without skipping a record while others are edited or deleted."""

    def test_fresh_listing_at_the_last_time_seen(self) -> None:
        page = [{"id": "1", "Modified_Time": at(0)}, {"id": "2", "Modified_Time": at(5)}]
        step = reconcile.listing_after(reconcile.Listing(at(0)), page, True, "tok")
        assert step == reconcile.Listing(at(5))  # the records of second 5 are read again
        assert reconcile.listing_after(reconcile.Listing(None), page, True, "tok") == (
            reconcile.Listing(at(5)))

    def test_one_second_follows_the_token(self) -> None:
        page = [{"id": "1", "Modified_Time": at(5)}, {"id": "2", "Modified_Time": at(5)}]
        step = reconcile.listing_after(reconcile.Listing(at(5)), page, True, "tok")
        assert step == reconcile.Listing(at(5), "tok")  # equal is not newer

    def test_done(self) -> None:
        page = [{"id": "1", "Modified_Time": at(5)}]
        assert reconcile.listing_after(reconcile.Listing(at(0)), page, False, None) is None
        assert reconcile.listing_after(reconcile.Listing(at(0)), [], True, "tok") is None

    def test_stuck_in_one_second(self) -> None:
        assert reconcile.listing_stuck(reconcile.Listing(at(5), "tok")) == reconcile.Stuck(
            at(5), at(6))
        page = [{"id": "1", "Modified_Time": at(5)}]
        assert reconcile.listing_after(reconcile.Listing(at(5)), page, True, None) == (
            reconcile.Stuck(at(5), at(6)))

    def test_far_past_the_limit(self) -> None:
        times = {i: i // 7 for i in range(1, 3001)}  # 7 records a second
        server = ZohoListing(times, per_page=20, limit=100)
        read, stuck = catch_up(server, at(0))
        assert set(read) == {str(i) for i in times} and not stuck
        assert server.requests < 3000 / 13 + 2  # at most a second's records read again a page

    def test_one_second_larger_than_a_page(self) -> None:
        times = {i: 3 if 10 <= i < 75 else i for i in range(1, 120)}  # 65 records in second 3
        read, stuck = catch_up(ZohoListing(times, per_page=20, limit=100), None)
        assert set(read) == {str(i) for i in times} and not stuck

    def test_one_second_larger_than_the_limit_is_reported(self) -> None:
        times = {i: 3 if i < 150 else i for i in range(1, 200)}
        read, stuck = catch_up(ZohoListing(times, per_page=20, limit=100), at(0))
        assert stuck == [at(3)]
        assert {str(i) for i in range(150, 200)} <= set(read)

    @given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 400)), max_size=60),
           st.integers(1, 5), st.integers(0, 30))
    def test_edits_and_deletes_meanwhile_skip_nothing(
            self, events: list[tuple[int, int]], per_second: int, since: int) -> None:
        """Every record that did not change during the catch-up and whose time is in the
        window is read, however the others are edited, deleted or created meanwhile."""
        times = {i: i // per_second for i in range(1, 401)}
        server = ZohoListing(times, per_page=10, limit=50)
        touched: set[int] = set()
        queue = list(events)
        now = [max(times.values()) + 1]

        def meanwhile() -> None:
            if not queue:
                return
            kind, i = queue.pop(0)
            touched.add(i)
            if kind == 0:
                server.times.pop(i, None)  # deleted
            elif kind == 1 and i in server.times:
                server.times[i] = now[0]  # edited: now the newest
            else:
                server.times[1000 + len(queue)] = now[0]  # created
            now[0] += rnd_step(kind)

        read, stuck = catch_up(server, at(since), meanwhile)
        assert not stuck
        expected = {str(i) for i, t in times.items() if t >= since and i not in touched}
        assert expected <= set(read)


def rnd_step(kind: int) -> int:
    return kind % 2  # some changes share a second, some do not


class TestCells:
    """CSV cells back into the records API's shapes; records into typed columns."""

    specs: ClassVar[list[cells.FieldSpec]] = [
        cells.FieldSpec("id", "bigint"), cells.FieldSpec("N", "integer"),
        cells.FieldSpec("D", "currency"), cells.FieldSpec("B", "boolean"),
        cells.FieldSpec("M", "multiselectpicklist"), cells.FieldSpec("O", "ownerlookup"),
        cells.FieldSpec("L", "lookup"), cells.FieldSpec("T", "text")]
    users: ClassVar[dict[str, cells.User]] = {"9": cells.User("Pat", "pat@x.test")}

    def test_from_cells(self) -> None:
        header = ["Id", "N", "D", "B", "M", "O", "L", "T"]
        record, complete = cells.from_cells(self.specs, header,
                                            ["1", "5", "3059.0", "false", "a;b", "9", "", ""],
                                            self.users)
        assert complete and record == {"id": "1", "N": 5, "D": 3059.0, "B": False,
                                       "M": ["a", "b"], "L": None, "T": None,
                                       "O": {"name": "Pat", "id": "9", "email": "pat@x.test"}}
        record, complete = cells.from_cells(self.specs, header,
                                            ["1", "", "7", "", "", "8", "3", "x"], self.users)
        assert not complete and record["L"] == {"name": None, "id": "3"} and record["D"] == 7

    def test_row_values(self) -> None:
        record = {"id": "1", "N": 5, "D": 2, "B": True, "M": ["a"], "L": {"id": "3", "name": "x"},
                  "O": None, "T": "t"}
        assert cells.row_values(self.specs, record) == ["1", 5, 2.0, True, '["a"]', None, "3",
                                                         "t"]
        assert orjson.loads(cells.record_json(self.specs, {"id": "1"}))["T"] is None


def sign(key: bytes, msg_id: str, stamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class TestReceiverRules:
    """Only our channel's notifications, with our token (and signature), are taken."""

    body = orjson.dumps({"channel_id": "77", "token": "tok", "module": "Leads",
                         "operation": "update", "ids": ["5", "6"]})
    kw: ClassVar[dict[str, Any]] = {"channel_id": "77", "token": "tok", "modules": ["Leads"],
                                    "key": None, "now_s": 1e9}

    def test_accepts(self) -> None:
        note = parse(self.body, {"x-crmwatch-channel-seq": "4",
                                 "x-crmwatch-previous-channel-seq": "3"}, **self.kw)
        assert (note.ids, note.channel_seq, note.previous_seq) == (["5", "6"], 4, 3)

    @pytest.mark.parametrize(("change", "reason"), [
        ({"token": "bad"}, "token"), ({"channel_id": "78"}, "channel"),
        ({"module": "Deals"}, "invalid"), ({"ids": ["x"]}, "invalid"),
        ({"operation": "merge"}, "invalid")])
    def test_refuses(self, change: dict[str, object], reason: str) -> None:
        doc = {**orjson.loads(self.body), **change}
        with pytest.raises(Refused) as caught:
            parse(orjson.dumps(doc), {}, **self.kw)
        assert caught.value.reason == reason and 400 <= caught.value.status < 500

    def test_garbage(self) -> None:
        for body in (b"{", b"[1]", b"\xff"):
            with pytest.raises(Refused):
                parse(body, {}, **self.kw)

    def test_signatures(self) -> None:
        secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
        key = signature.key_of(secret)
        kw = {**self.kw, "key": key}
        good = {"webhook-id": "m1", "webhook-timestamp": str(10**9),
                "webhook-signature": "v1,AAAA " + sign(key, "m1", 10**9, self.body)}
        assert parse(self.body, good, **kw).ids == ["5", "6"]
        for bad in ({**good, "webhook-signature": sign(b"other", "m1", 10**9, self.body)},
                    {**good, "webhook-timestamp": str(10**9 - 1000)}, {}):
            with pytest.raises(Refused) as caught:
                parse(self.body, bad, **kw)
            assert caught.value.reason == "signature"

    def test_server_signatures_verify(self) -> None:
        """The server's signer (delivery/signing.py) and this verifier agree."""
        from crmwatch.delivery import signing

        secret = signing.new_secret()
        headers = signing.headers([secret], "msg", 10**9, self.body)
        assert signature.verify(signature.key_of(secret), headers, self.body, 10**9)
