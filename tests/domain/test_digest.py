"""The canonical form and the digests (crmwatch.digest, docs/digest.md)."""

from __future__ import annotations

import hashlib
import random
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from crmwatch import digest
from crmwatch.digest import BucketHasher, canonical, number_text, record_hash, split_counts

DOC = Path(__file__).resolve().parents[2] / "docs" / "digest.md"

# The worked example of docs/digest.md; its bytes and hashes were also computed by an
# independent JavaScript reading of the document (JSON.stringify, String(number), sha256).
EXAMPLE_FIELDS = ["Modified_Time", "Owner", "Last_Name", "Company", "Annual_Revenue",
                  "Discount", "No_of_Employees", "Tags", "Email_Opt_Out", "Description",
                  "Lead_Source"]
EXAMPLE_1 = {
    "id": "4100000000000201",
    "Owner": {"name": "Ada Admin", "id": "4100000000000002", "email": "ada@example.test"},
    "Last_Name": "Lovelace", "Company": "Zoë & Co \"Analytical\"",
    "Annual_Revenue": 1250000.0, "Discount": 0.075, "No_of_Employees": 12,
    "Tags": ["VIP", "Q4"], "Email_Opt_Out": False,
    "Modified_Time": "2025-11-23T14:23:20+05:30", "Description": None}
EXAMPLE_2 = {
    "id": "4100000000000305", "Last_Name": "Hopper",
    "Owner": {"name": "Ada Admin", "id": "4100000000000002"}, "Company": None,
    "Annual_Revenue": None, "Discount": None, "No_of_Employees": None, "Tags": [],
    "Email_Opt_Out": True, "Modified_Time": "2025-11-23T14:25:01+05:30",
    "Description": "line one\nline two", "Lead_Source": "Web"}
EXAMPLE_1_BYTES = (
    '{"Annual_Revenue":1250000,"Company":"Zoë & Co \\"Analytical\\"","Description":null,'
    '"Discount":0.075,"Email_Opt_Out":false,"Last_Name":"Lovelace","Lead_Source":null,'
    '"Modified_Time":"2025-11-23T14:23:20+05:30","No_of_Employees":12,'
    '"Owner":"4100000000000002","Tags":["VIP","Q4"],"id":"4100000000000201"}').encode()
EXAMPLE_2_BYTES = (
    b'{"Annual_Revenue":null,"Company":null,"Description":"line one\\nline two",'
    b'"Discount":null,"Email_Opt_Out":true,"Last_Name":"Hopper","Lead_Source":"Web",'
    b'"Modified_Time":"2025-11-23T14:25:01+05:30","No_of_Employees":null,'
    b'"Owner":"4100000000000002","Tags":[],"id":"4100000000000305"}')
EXAMPLE_1_HASH = "eeef04fbbbfe06ccaf258344f18361fa0e7d294d3783abb8c6cf8cfb86a5d0a7"
EXAMPLE_2_HASH = "eecfdb8f89f8dd831a5d0bacbc7fe0cc0aa101470e961d8ae1e31cc4ba5b7447"
EXAMPLE_BUCKET_HASH = "855a7e951f9aca58774d2df336a278c003c028dec5bd77acffa46216dc0abd06"


class TestWorkedExample:
    """The example of docs/digest.md gives exactly the bytes and hashes the document shows."""

    def test_bytes_and_hashes(self) -> None:
        assert canonical(EXAMPLE_1, EXAMPLE_FIELDS) == EXAMPLE_1_BYTES
        assert canonical(EXAMPLE_2, EXAMPLE_FIELDS) == EXAMPLE_2_BYTES
        assert record_hash(EXAMPLE_1, EXAMPLE_FIELDS).hex() == EXAMPLE_1_HASH
        assert record_hash(EXAMPLE_2, EXAMPLE_FIELDS).hex() == EXAMPLE_2_HASH
        bucket = BucketHasher(EXAMPLE_FIELDS)
        bucket.add(EXAMPLE_1["id"], EXAMPLE_1)  # type: ignore[arg-type]
        bucket.add(EXAMPLE_2["id"], EXAMPLE_2)  # type: ignore[arg-type]
        assert (bucket.count, bucket.hexdigest()) == (2, EXAMPLE_BUCKET_HASH)

    def test_document_shows_them(self) -> None:
        text = DOC.read_text("utf-8")
        for shown in (EXAMPLE_1_BYTES.decode(), EXAMPLE_2_BYTES.decode(), EXAMPLE_1_HASH,
                      EXAMPLE_2_HASH, EXAMPLE_BUCKET_HASH, digest.ALGORITHM, digest.EMPTY_HASH):
            assert shown in text, shown


class TestNumbers:
    """Numbers have one text whatever type the reader gave them."""

    # Expected texts from JavaScript's String(x) (node), for the non-integral ones.
    @pytest.mark.parametrize(("value", "text"), [
        (0, "0"), (-7, "-7"), (5.0, "5"), (-0.0, "0"), (1e16, "10000000000000000"),
        (1e21, "1000000000000000000000"), (2**70, "1180591620717411303424"),
        (123456789012345678, "123456789012345678"), (0.1, "0.1"), (-0.25, "-0.25"),
        (0.075, "0.075"), (1e-6, "0.000001"), (1.5e-7, "1.5e-7"), (1e-7, "1e-7"),
        (1 / 3, "0.3333333333333333"), (123456.789, "123456.789"),
        (4503599627370495.5, "4503599627370495.5"), (5e-324, "5e-324"),
        (9.99e-7, "9.99e-7"), (0.000001234, "0.000001234"), (99.99, "99.99"),
    ])
    def test_texts(self, value: float, text: str) -> None:
        assert number_text(value) == text

    def test_int_and_float_alike(self) -> None:
        assert canonical({"id": "1", "n": 5}, ["n"]) == canonical({"id": "1", "n": 5.0}, ["n"])

    def test_refused(self) -> None:
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError):
                number_text(bad)
        with pytest.raises(TypeError):
            canonical({"id": "1", "x": object()}, ["x"])

    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_reads_back(self, value: float) -> None:
        assert float(number_text(value)) == value


class TestShape:
    """Lookups reduce to ids, missing fields are null, strings are escaped as JSON does."""

    def test_lookup_reduced(self) -> None:
        a = {"id": "11", "Owner": {"id": "7", "name": "A", "email": "a@x.test"},
             "Account": {"id": "9", "name": "Old name"}, "Users": [{"id": "3", "name": "C"}]}
        b = {"id": "11", "Owner": {"id": "7"}, "Account": {"id": "9", "name": "New name"},
             "Users": [{"id": 3}]}
        fields = ["Owner", "Account", "Users"]
        assert canonical(a, fields) == canonical(b, fields) == (
            b'{"Account":"9","Owner":"7","Users":["3"],"id":"11"}')

    def test_missing_is_null(self) -> None:
        assert canonical({"id": "1"}, ["B", "A"]) == b'{"A":null,"B":null,"id":"1"}'
        assert canonical({"id": 12, "A": None}, ["A", "id"]) == b'{"A":null,"id":"12"}'

    def test_nested_objects_sorted(self) -> None:
        assert canonical({"id": "1", "X": {"b": 1.5, "a": [2.0, {"z": None, "y": True}]}},
                         ["X"]) == b'{"X":{"a":[2,{"y":true,"z":null}],"b":1.5},"id":"1"}'

    def test_escapes(self) -> None:
        text = "".join(chr(i) for i in range(0x20)) + "\"\\/\x7f\u2028é😀"
        expected = ('"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n'
                    '\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015'
                    '\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f'
                    '\\"\\\\/\x7f\u2028é😀"')
        assert canonical({"id": "1", "S": text}, ["S"]) == (
            '{"S":' + expected + ',"id":"1"}').encode()


# -- properties -------------------------------------------------------------------------------

names = st.from_regex(r"[A-Z][A-Za-z0-9_]{0,12}", fullmatch=True)
record_ids = st.integers(min_value=1, max_value=10**19 - 1).map(str)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
lookups = st.fixed_dictionaries({"id": record_ids}, optional={
    "name": st.text(max_size=10), "email": st.text(max_size=10)})
values = st.one_of(
    scalars, lookups, st.lists(st.text(max_size=8), max_size=4), st.lists(lookups, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3))
records = st.builds(lambda rid, fields: {"id": rid, **fields}, record_ids,
                    st.dictionaries(names, values, max_size=8))


def meaning(value: Any) -> Any:
    """What a value says, independent of canonical(): a lookup is its id (a string), numbers
    are exact values."""
    if isinstance(value, dict):
        return ("string", str(value["id"])) if "id" in value else (
            "object", tuple(sorted((k, meaning_inner(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("list", tuple(("string", str(v["id"])) if isinstance(v, dict) and "id" in v
                              else meaning_inner(v) for v in value))
    return meaning_inner(value)


def meaning_inner(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", Fraction(Decimal(value)) if isinstance(value, float)
                else Fraction(value))
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, meaning_inner(v)) for k, v in value.items())))
    return ("list", tuple(meaning_inner(v) for v in value))


class TestProperties:
    """Equal records hash equal; any change of id or of a field's value changes the hash."""

    @given(records, st.randoms(use_true_random=False))
    def test_order_does_not_matter(self, record: dict[str, Any], rnd: random.Random) -> None:
        fields = [k for k in record if k != "id"] + ["Absent"]
        shuffled_fields = rnd.sample(fields, len(fields))
        items = list(record.items())
        rnd.shuffle(items)
        copy = {k: (dict(reversed(list(v.items()))) if isinstance(v, dict) else v)
                for k, v in items}
        assert record_hash(copy, shuffled_fields) == record_hash(record, fields)
        assert canonical(record, fields + fields) == canonical(record, fields)

    @given(records, record_ids)
    def test_id_change(self, record: dict[str, Any], other_id: str) -> None:
        assume(other_id != record["id"])
        fields = sorted(k for k in record if k != "id")
        assert record_hash({**record, "id": other_id}, fields) != record_hash(record, fields)

    @given(records, names, values, values)
    def test_value_change(self, record: dict[str, Any], field: str, old: Any,
                          new: Any) -> None:
        assume(meaning(old) != meaning(new))
        fields = sorted({*record, field} - {"id"})
        before = record_hash({**record, field: old}, fields)
        assert record_hash({**record, field: new}, fields) != before

    @given(records, names, lookups, st.text(max_size=10))
    def test_lookup_name_ignored(self, record: dict[str, Any], field: str,
                                 lookup: dict[str, str], name: str) -> None:
        fields = sorted({*record, field} - {"id"})
        assert (record_hash({**record, field: lookup}, fields)
                == record_hash({**record, field: {**lookup, "name": name}}, fields))

    @given(records)
    def test_canonical_is_json_of_the_meaning(self, record: dict[str, Any]) -> None:
        import json

        fields = sorted(k for k in record if k != "id")
        parsed = json.loads(canonical(record, fields))
        assert list(parsed) == sorted(parsed)
        assert {k: meaning(v) for k, v in parsed.items() if k != "id"} == {
            k: meaning(record[k]) for k in fields}


class TestBuckets:
    """A bucket's hash is SHA-256 over its record hashes in ascending numeric id order."""

    @given(st.lists(records, max_size=12, unique_by=lambda r: r["id"]))
    def test_concatenation(self, recs: list[dict[str, Any]]) -> None:
        recs.sort(key=lambda r: digest.id_key(r["id"]))
        fields = ["A", "B"]
        bucket = BucketHasher(fields)
        for r in recs:
            bucket.add(r["id"], r)
        joined = b"".join(record_hash(r, fields) for r in recs)
        assert bucket.hexdigest() == hashlib.sha256(joined).hexdigest()
        assert bucket.count == len(recs)
        assert (bucket.first_id, bucket.last_id) == (
            (recs[0]["id"], recs[-1]["id"]) if recs else (None, None))

    def test_empty(self) -> None:
        assert BucketHasher([]).hexdigest() == digest.EMPTY_HASH == hashlib.sha256().hexdigest()

    def test_numeric_order_enforced(self) -> None:
        bucket = BucketHasher([])
        bucket.add("99", {"id": "99"})
        bucket.add("100", {"id": "100"})
        with pytest.raises(ValueError):
            bucket.add("100", {"id": "100"})
        with pytest.raises(ValueError):
            bucket.add("101", {"id": "102"})

    def test_fields_normalised(self) -> None:
        assert BucketHasher(["b", "id", "a", "b"]).fields == ("a", "b")

    @given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=1, max_value=5000))
    def test_split_counts(self, total: int, buckets: int) -> None:
        sizes = split_counts(total, buckets)
        assert sum(sizes) == total
        assert len(sizes) == min(total, buckets)
        assert not sizes or (max(sizes) - min(sizes) <= 1 and min(sizes) >= 1)

    def test_ids(self) -> None:
        assert sorted(["100", "99", "1000", "2"], key=digest.id_key) == ["2", "99", "100", "1000"]
        assert digest.is_id("4100000000000201")
        for bad in ("", "0123", "１２", "-1", "1" * 20, "1.5"):
            assert not digest.is_id(bad)
