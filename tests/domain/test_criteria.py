"""Criteria: both parsers, their errors, evaluate, and SQL equivalence (SQLite, for real)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmwatch.domain.criteria import (
    BULK_OPS,
    EVAL_OPS,
    MAX_CRITERIA_DEPTH,
    SEARCH_OPS,
    Condition,
    CriteriaError,
    Group,
    Node,
    compile_sql,
    conditions,
    evaluate,
    parse_bulk,
    parse_search,
)

FIELDS: dict[str, str] = {
    "id": "bigint",
    "Created_Time": "datetime",
    "Modified_Time": "datetime",
    "Owner": "ownerlookup",
    "Created_By": "userlookup",
    "Last_Name": "text",
    "First_Name": "text",
    "Description": "textarea",
    "Email": "email",
    "Phone": "phone",
    "Website": "website",
    "Lead_Source": "picklist",
    "Tags": "multiselectpicklist",
    "Employees": "integer",
    "Big": "bigint",
    "Amount": "currency",
    "Ratio": "double",
    "Share": "percent",
    "Opt_Out": "boolean",
    "Due": "date",
    "Met": "datetime",
    "Account": "lookup",
    "Number": "autonumber",
    "Items": "subform",
}


def cond(field: str, op: str, *values: object) -> Condition:
    return Condition(field, op, tuple(values), FIELDS[field])


def error(exc: pytest.ExceptionInfo[CriteriaError]) -> tuple[str, dict[str, object]]:
    return exc.value.code, exc.value.details


# -- Search Records syntax: valid ----------------------------------------------------------------


def test_search_single_bare_condition() -> None:
    assert parse_search("Last_Name:equals:Burns", FIELDS) == cond("Last_Name", "equals", "Burns")


def test_search_single_parenthesised_condition() -> None:
    assert parse_search("(Last_Name:equals:Burns)", FIELDS) == cond("Last_Name", "equals", "Burns")
    assert parse_search("((Last_Name:equals:Burns))", FIELDS) == cond(
        "Last_Name", "equals", "Burns"
    )


def test_search_and_group() -> None:
    node = parse_search("((Last_Name:equals:Burns)and(First_Name:starts_with:B))", FIELDS)
    assert node == Group(
        "and", (cond("Last_Name", "equals", "Burns"), cond("First_Name", "starts_with", "B"))
    )


def test_search_keywords_whitespace_and_case() -> None:
    node = parse_search(" ( (Last_Name:equals:Burns) AND (First_Name:starts_with:B) ) ", FIELDS)
    assert node == Group(
        "and", (cond("Last_Name", "equals", "Burns"), cond("First_Name", "starts_with", "B"))
    )


def test_search_nested_groups_keep_their_parentheses() -> None:
    node = parse_search(
        "(((Last_Name:equals:A)or(Last_Name:equals:B))and(Employees:greater_than:10))", FIELDS
    )
    assert node == Group(
        "and",
        (
            Group("or", (cond("Last_Name", "equals", "A"), cond("Last_Name", "equals", "B"))),
            cond("Employees", "greater_than", 10),
        ),
    )


def test_search_and_binds_tighter_than_or() -> None:
    node = parse_search("(Last_Name:equals:A)or(Last_Name:equals:B)and(Employees:in:1,2)", FIELDS)
    assert node == Group(
        "or",
        (
            cond("Last_Name", "equals", "A"),
            Group("and", (cond("Last_Name", "equals", "B"), cond("Employees", "in", 1, 2))),
        ),
    )


def test_search_three_way_chain_is_one_group() -> None:
    node = parse_search("((Big:equals:1)or(Big:equals:2)or(Big:equals:3))", FIELDS)
    assert node == Group("or", tuple(cond("Big", "equals", n) for n in (1, 2, 3)))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"(Last_Name:equals:Burns\,B)", "Burns,B"),
        (r"(Last_Name:equals:Patricia\(Boyle\))", "Patricia(Boyle)"),
        (r"(Last_Name:equals:K\\)", "K\\"),
        (r"(Last_Name:equals:a\b)", "a\\b"),
        ("(Last_Name:equals:a,b)", "a,b"),
        ("(Last_Name:equals:  Van Der Berg )", "Van Der Berg"),
        ("(Last_Name:equals:x:y)", "x:y"),
    ],
)
def test_search_value_escapes(text: str, value: str) -> None:
    assert parse_search(text, FIELDS) == cond("Last_Name", "equals", value)


def test_search_in_splits_on_unescaped_commas() -> None:
    node = parse_search(r"(Last_Name:in:Patricia,Boyle\,Jr,Kate)", FIELDS)
    assert node == cond("Last_Name", "in", "Patricia", "Boyle,Jr", "Kate")


def test_search_typed_values() -> None:
    node = parse_search(
        "((Employees:between:-5,+10)and(Amount:less_equal:12.50)and(Opt_Out:equals:TRUE)"
        "and(Due:in:2024-01-31,2024-02-29)and(Owner:in:0041,5725767000000411001)"
        "and(Tags:starts_with:Cold)and(id:greater_than:5725767000000524157))",
        FIELDS,
    )
    assert node == Group(
        "and",
        (
            cond("Employees", "between", -5, 10),
            cond("Amount", "less_equal", 12.5),
            cond("Opt_Out", "equals", True),
            cond("Due", "in", "2024-01-31", "2024-02-29"),
            cond("Owner", "in", "41", "5725767000000411001"),
            cond("Tags", "starts_with", "Cold"),
            cond("id", "greater_than", 5725767000000524157),
        ),
    )


@pytest.mark.parametrize(
    "raw",
    [
        "2024-02-01T18:52:56+05:30",
        "2024-02-01T18:52:56 05:30",  # an unencoded "+" decoded to a space
        "2024-02-01T13:22:56Z",
        "2024-02-01T13:22:56.000+00:00",
        "2024-02-01T05:22:56-08:00",
    ],
)
def test_search_datetimes_are_normalised_to_utc(raw: str) -> None:
    node = parse_search(f"(Met:equals:{raw})", FIELDS)
    assert node == cond("Met", "equals", "2024-02-01T13:22:56+00:00")


# -- Search Records syntax: errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("(Last_Name:equals:A", "expected )"),
        ("Last_Name:equals:A)", "unbalanced )"),
        ("((Last_Name:equals:A)", "expected )"),
        ("(Last_Name:equals:A))", "unexpected character"),
        ("(Last_Name:equals:A)(First_Name:equals:B)", "unexpected character"),
        ("(Last_Name:equals:A) and First_Name:equals:B", "expected ( after"),
        ("(Last_Name:equals:A) xor (First_Name:equals:B)", "unexpected character"),
        ("(Last_Name equals A)", "expected a field API name"),
        ("(Last_Name:equals)", "expected an operator"),
        ("(Last_Name:equals:Patricia(Boyle))", "unescaped ("),
        ("(" * 40 + "Last_Name:equals:A" + ")" * 40, "nested too deeply"),
    ],
)
def test_search_syntax_errors(text: str, reason: str) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_search(text, FIELDS)
    code, details = error(exc)
    assert code == "INVALID_QUERY"
    assert exc.value.message == "invalid query formed"
    assert reason in str(details["reason"])


@pytest.mark.parametrize(
    "text",
    ["(Unknown:equals:A)", "(Items:equals:A)", "(Account.Phone:equals:A)", "(last_name:equals:A)"],
)
def test_search_unknown_or_unsearchable_field(text: str) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_search(text, FIELDS)
    assert exc.value.code == "INVALID_QUERY"
    assert exc.value.details["reason"] == "the field is not available for search"
    assert exc.value.details["api_name"] == text[1 : text.index(":")]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("(Employees:starts_with:1)", "The operator is not valid for the field type"),
        ("(Last_Name:greater_than:A)", "The operator is not valid for the field type"),
        ("(Description:in:a,b)", "The operator is not valid for the field type"),
        ("(Opt_Out:in:true)", "The operator is not valid for the field type"),
        ("(Lead_Source:starts_with:A)", "The operator is not valid for the field type"),
        ("(Last_Name:contains:A)", "invalid operator found"),
        ("(Last_Name:like:A)", "invalid operator found"),
    ],
)
def test_search_operator_not_allowed(text: str, reason: str) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_search(text, FIELDS)
    assert exc.value.code == "INVALID_QUERY"
    assert exc.value.message == "invalid operator found"
    assert exc.value.details["reason"] == reason
    assert exc.value.details["operator"] == text.split(":")[1]


@pytest.mark.parametrize(
    ("text", "expected", "value"),
    [
        ("(Employees:equals:ten)", "integer", "ten"),
        ("(Employees:equals:1.5)", "integer", "1.5"),
        ("(Big:equals:99999999999999999999)", "bigint", "99999999999999999999"),
        ("(Amount:equals:1e999)", "currency", "1e999"),
        ("(Amount:equals:NaN)", "currency", "NaN"),
        ("(Due:equals:2024-02-30)", "date", "2024-02-30"),
        ("(Due:equals:01-02-2024)", "date", "01-02-2024"),
        ("(Met:equals:2024-02-01)", "datetime", "2024-02-01"),
        ("(Met:equals:2024-02-01T10:00:00)", "datetime", "2024-02-01T10:00:00"),
        ("(Met:equals:2024-02-01T10:00:00.5Z)", "datetime", "2024-02-01T10:00:00.5Z"),
        ("(Opt_Out:equals:yes)", "boolean", "yes"),
        ("(Owner:equals:Patricia Boyle)", "ownerlookup", "Patricia Boyle"),
        ("(Last_Name:equals:)", "text", ""),
        ("(Last_Name:in:a,,b)", "text", ""),
        ("(Employees:between:1)", "integer", "1"),
        ("(Employees:between:1,2,3)", "integer", "1"),
    ],
)
def test_search_invalid_values(text: str, expected: str, value: str) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_search(text, FIELDS)
    assert exc.value.code == "INVALID_QUERY"
    assert exc.value.details == {
        "expected_data_type": expected,
        "reason": "invalid value for search",
        "api_name": text[1 : text.index(":")],
        "value": value,
    }


def test_search_in_value_limit() -> None:
    ok = "(Employees:in:" + ",".join(str(n) for n in range(100)) + ")"
    assert len(parse_search(ok, FIELDS).values) == 100  # type: ignore[union-attr]
    with pytest.raises(CriteriaError) as exc:
        parse_search("(Employees:in:" + ",".join(str(n) for n in range(101)) + ")", FIELDS)
    assert exc.value.code == "INVALID_QUERY"
    assert exc.value.details == {"api_name": "Employees"}


def test_search_condition_limit() -> None:
    def chain(n: int) -> str:
        return "(" + "or".join(f"(Employees:equals:{k})" for k in range(n)) + ")"

    assert len(list(conditions(parse_search(chain(10), FIELDS)))) == 10
    with pytest.raises(CriteriaError) as exc:
        parse_search(chain(11), FIELDS)
    assert exc.value.code == "CRITERIA_LIMIT_EXCEEDED"
    assert exc.value.details == {}
    assert len(list(conditions(parse_search(chain(15), FIELDS, max_conditions=15)))) == 15


def test_criteria_error_renders_as_zoho_error() -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_search("(Nope:equals:A)", FIELDS)
    assert exc.value.status_code == 400
    assert exc.value.to_json() == {
        "code": "INVALID_QUERY",
        "status": "error",
        "message": "the field is not available for search",
        "details": {"reason": "the field is not available for search", "api_name": "Nope"},
    }


# -- Bulk Read JSON: valid -----------------------------------------------------------------------


def leaf(name: str, comparator: str, value: object) -> dict[str, object]:
    return {"field": {"api_name": name}, "comparator": comparator, "value": value}


def test_bulk_leaf_both_forms() -> None:
    expected = cond("Lead_Source", "equals", "Advertisement")
    assert parse_bulk(leaf("Lead_Source", "equal", "Advertisement"), FIELDS) == expected
    old = {"api_name": "Lead_Source", "comparator": "equal", "value": "Advertisement"}
    assert parse_bulk(old, FIELDS) == expected
    with_type = {**leaf("Lead_Source", "equal", "Advertisement"), "type": "value"}
    assert parse_bulk(with_type, FIELDS) == expected


def test_bulk_nested_groups() -> None:
    obj = {
        "group_operator": "AND",
        "group": [
            leaf("Lead_Source", "in", ["Web", "Advertisement"]),
            {
                "group_operator": "or",
                "group": [
                    leaf("Amount", "greater_equal", 100),
                    leaf(
                        "Modified_Time",
                        "between",
                        ["2026-11-20T08:00:00Z", "2026-11-21T08:00:00+05:30"],
                    ),
                ],
            },
        ],
    }
    assert parse_bulk(obj, FIELDS) == Group(
        "and",
        (
            cond("Lead_Source", "in", "Web", "Advertisement"),
            Group(
                "or",
                (
                    cond("Amount", "greater_equal", 100.0),
                    cond(
                        "Modified_Time",
                        "between",
                        "2026-11-20T08:00:00+00:00",
                        "2026-11-21T02:30:00+00:00",
                    ),
                ),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (leaf("Employees", "not_in", [1, "2", 3.0]), cond("Employees", "not_in", 1, 2, 3)),
        (
            leaf("Big", "less_than", "9223372036854775807"),
            cond("Big", "less_than", 9223372036854775807),
        ),
        (leaf("Ratio", "equal", "0.1"), cond("Ratio", "equals", 0.1)),
        (leaf("Opt_Out", "equal", "false"), cond("Opt_Out", "equals", False)),
        (leaf("Opt_Out", "equal", True), cond("Opt_Out", "equals", True)),
        (leaf("Phone", "contains", 555), cond("Phone", "contains", "555")),
        (leaf("Email", "ends_with", "@zylker.com"), cond("Email", "ends_with", "@zylker.com")),
        (leaf("Tags", "not_contains", "cold"), cond("Tags", "not_contains", "cold")),
        (
            leaf("Due", "not_between", ["2024-01-01", "2024-12-31"]),
            cond("Due", "not_between", "2024-01-01", "2024-12-31"),
        ),
        (
            leaf("Account", "in", [5725767000000524157, "42"]),
            cond("Account", "in", "5725767000000524157", "42"),
        ),
        (leaf("Last_Name", "equal", "${EMPTY}"), cond("Last_Name", "is_empty")),
        (leaf("Account", "not_equal", "${EMPTY}"), cond("Account", "is_not_empty")),
        (leaf("Employees", "equal", "${EMPTY}"), cond("Employees", "is_empty")),
    ],
)
def test_bulk_values(obj: dict[str, object], expected: Condition) -> None:
    assert parse_bulk(obj, FIELDS) == expected


# -- Bulk Read JSON: errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "code", "details"),
    [
        ("Last_Name", "INVALID_CRITERIA", {"json_path": "$.query.criteria"}),
        ({}, "INVALID_CRITERIA", {"json_path": "$.query.criteria"}),
        (
            {"comparator": "equal", "value": "x"},
            "INVALID_CRITERIA",
            {"json_path": "$.query.criteria"},
        ),
        (
            {"field": {"api_name": "Last_Name"}, "value": "x"},
            "INVALID_CRITERIA",
            {"json_path": "$.query.criteria"},
        ),
        (
            {"field": {"api_name": "Last_Name"}, "comparator": "equal"},
            "INVALID_CRITERIA",
            {"json_path": "$.query.criteria"},
        ),
        (
            {"group_operator": "and", "group": "x"},
            "INVALID_CRITERIA",
            {"json_path": "$.query.criteria.group"},
        ),
        (
            {**leaf("Last_Name", "equal", "x"), "type": "field"},
            "CRITERIA_NOT_SUPPORTED",
            {"api_name": "Last_Name", "json_path": "$.query.criteria.type"},
        ),
        (
            {"group_operator": "and", **leaf("Last_Name", "equal", "x")},
            "AMBIGUOUS_CRITERIA",
            {"json_path": "$.query.criteria"},
        ),
        (
            {"group_operator": "and", "group": [leaf("Last_Name", "equal", "x")]},
            "AMBIGUOUS_GROUP_IN_CRITERIA",
            {"json_path": "$.query.criteria"},
        ),
        (
            {"group": [leaf("Last_Name", "equal", "x"), leaf("Last_Name", "equal", "y")]},
            "AMBIGUOUS_GROUP_IN_CRITERIA",
            {"json_path": "$.query.criteria"},
        ),
        (
            {"group_operator": "xor", "group": [leaf("Last_Name", "equal", "x")] * 2},
            "GROUP_OPERATOR_NOT_SUPPORTED",
            {"supported": ["and", "or"], "json_path": "$.query.criteria.group_operator"},
        ),
        (
            leaf("Nope", "equal", "x"),
            "FIELD_IN_CRITERIA_NOT_AVAILABLE",
            {"api_name": "Nope", "json_path": "$.query.criteria"},
        ),
        (
            leaf("Account.Phone", "equal", "x"),
            "FIELD_IN_CRITERIA_NOT_SUPPORTED",
            {"api_name": "Account.Phone", "json_path": "$.query.criteria"},
        ),
        (
            leaf("Items", "equal", "x"),
            "FIELD_IN_CRITERIA_NOT_SUPPORTED",
            {"api_name": "Items", "json_path": "$.query.criteria"},
        ),
        (
            leaf("Opt_Out", "not_equal", True),
            "FIELD_COMPARATOR_IN_CRITERIA_NOT_SUPPORTED",
            {
                "api_name": "Opt_Out",
                "comparator": "not_equal",
                "supported": ["equal"],
                "json_path": "$.query.criteria.comparator",
            },
        ),
    ],
)
def test_bulk_structure_errors(obj: object, code: str, details: dict[str, object]) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_bulk(obj, FIELDS)
    assert error(exc) == (code, details)


@pytest.mark.parametrize(
    ("name", "comparator"),
    [
        ("Employees", "starts_with"),
        ("Last_Name", "greater_than"),
        ("Due", "contains"),
        ("Account", "contains"),
        ("Last_Name", "equals"),
        ("Last_Name", "between"),
    ],
)
def test_bulk_comparator_not_supported(name: str, comparator: str) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_bulk(leaf(name, comparator, "1"), FIELDS)
    assert exc.value.code == "FIELD_COMPARATOR_IN_CRITERIA_NOT_SUPPORTED"
    assert exc.value.details["comparator"] == comparator


@pytest.mark.parametrize(
    ("name", "comparator", "value", "code"),
    [
        ("Last_Name", "in", "Boyle", "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "in", [], "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "equal", ["Boyle"], "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "equal", {"a": 1}, "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Due", "between", ["2024-01-01"], "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "contains", "${EMPTY}", "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "in", ["a", "${EMPTY}"], "COMPARATOR_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "equal", None, "VALUE_IN_CRITERIA_NOT_SUPPORTED"),
        ("Last_Name", "equal", "", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Last_Name", "equal", "x" * 256, "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Employees", "equal", "ten", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Employees", "equal", True, "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Big", "equal", 2**63, "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Amount", "equal", "1,000", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Opt_Out", "equal", "${EMPTY}", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Opt_Out", "equal", 1, "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        (
            "Modified_Time",
            "greater_than",
            "2026-11-20T08:00:00.000+00:00",
            "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE",
        ),
        ("Met", "equal", "2026-11-20T08:00:00.123Z", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Met", "equal", "2026-11-20", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
        ("Account", "equal", "Zylker", "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"),
    ],
)
def test_bulk_value_errors(name: str, comparator: str, value: object, code: str) -> None:
    with pytest.raises(CriteriaError) as exc:
        parse_bulk(leaf(name, comparator, value), FIELDS)
    assert exc.value.code == code
    echoed = json.dumps(value) if isinstance(value, dict) or value == 2**63 else value
    assert exc.value.details == {
        "api_name": name,
        "comparator": comparator,
        "value": echoed,
        "json_path": "$.query.criteria.value",
    }


@pytest.mark.parametrize("name", ["Employees", "Amount", "Account", "Last_Name"])
@pytest.mark.parametrize(
    "value",
    [10**5000, -(10**5000), 2**64, float("inf"), [10**5000]],
    ids=["huge", "-huge", "2**64", "inf", "[huge]"],
)
def test_huge_values_are_rejected_cleanly(name: str, value: object) -> None:
    comparator = "in" if isinstance(value, list) else "equal"
    with pytest.raises(CriteriaError) as exc:
        parse_bulk(leaf(name, comparator, value), FIELDS)
    assert exc.value.code == "FIELD_AND_VALUE_IN_CRITERIA_NOT_COMPATIBLE"
    json.dumps(exc.value.to_json(), allow_nan=False)
    echoed = exc.value.details["value"]
    assert isinstance(echoed, str | list) and len(echoed) <= 100
    for op in ("equals", "in") if name != "Last_Name" else ():
        with pytest.raises(CriteriaError) as exc:
            parse_search(f"({name}:{op}:{'9' * 5000})", FIELDS)
        assert exc.value.code == "INVALID_QUERY"


def test_bulk_error_path_points_into_groups() -> None:
    obj = {
        "group_operator": "or",
        "group": [
            leaf("Last_Name", "equal", "x"),
            {
                "group_operator": "and",
                "group": [leaf("Last_Name", "equal", "y"), leaf("Nope", "equal", "z")],
            },
        ],
    }
    with pytest.raises(CriteriaError) as exc:
        parse_bulk(obj, FIELDS, path="$.criteria")
    assert exc.value.details["json_path"] == "$.criteria.group[1].group[1]"
    assert "$.criteria.group[1].group[1]" in exc.value.message


def test_bulk_limits() -> None:
    many = {"group_operator": "or", "group": [leaf("Employees", "equal", k) for k in range(25)]}
    assert len(list(conditions(parse_bulk(many, FIELDS)))) == 25
    many["group"].append(leaf("Employees", "equal", 99))  # type: ignore[attr-defined]
    with pytest.raises(CriteriaError) as exc:
        parse_bulk(many, FIELDS)
    assert error(exc) == ("CRITERIA_LIMIT_EXCEEDED", {"max_limit": 25})
    assert parse_bulk(many, FIELDS, max_conditions=26) is not None

    with pytest.raises(CriteriaError) as exc:
        parse_bulk(leaf("Employees", "in", list(range(201))), FIELDS)
    assert exc.value.code == "VALUE_LIMIT_EXCEEDED_IN_CRITERIA"
    assert exc.value.details["max_limit"] == 200


# -- evaluate ------------------------------------------------------------------------------------

RECORD: dict[str, object] = {
    "id": 5725767000000524157,
    "Created_Time": 1_700_000_000_500,  # 2023-11-14T22:13:20.500Z
    "Modified_Time": 1_700_000_100_000,
    "Last_Name": "O'Brien",
    "Email": "Pat@Zylker.com",
    "Tags": ["Cold Call", "Web"],
    "Employees": 12,
    "Amount": 99.5,
    "Opt_Out": False,
    "Due": "2024-02-29",
    "Met": "2024-02-01T13:22:56+00:00",
    "Owner": {"id": "5725767000000411001", "name": "Pat"},
    "Account": None,
}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (cond("Last_Name", "equals", "o'brien"), True),
        (cond("Email", "starts_with", "PAT@"), True),
        (cond("Email", "ends_with", ".COM"), True),
        (cond("Email", "contains", "%"), False),
        (cond("Last_Name", "not_equal", "x"), True),
        (cond("First_Name", "not_equal", "x"), True),  # missing: negations match
        (cond("First_Name", "equals", "x"), False),
        (cond("First_Name", "is_empty"), True),
        (cond("Tags", "equals", "web"), True),
        (cond("Tags", "starts_with", "cold"), True),
        (cond("Tags", "in", "x", "cold call"), True),
        (cond("Tags", "not_equal", "web"), False),
        (cond("Tags", "is_not_empty"), True),
        (cond("Employees", "between", 12, 20), True),
        (cond("Employees", "greater_than", 12), False),
        (cond("Amount", "in", 1.0, 99.5), True),
        (cond("Opt_Out", "equals", False), True),
        (cond("Opt_Out", "not_equal", True), True),
        (cond("Due", "less_than", "2024-03-01"), True),
        (cond("Met", "greater_equal", "2024-02-01T13:22:56+00:00"), True),
        (cond("Owner", "equals", "5725767000000411001"), True),
        (cond("Account", "is_empty"), True),
        (cond("Account", "not_in", "1"), True),
        (cond("Created_Time", "equals", "2023-11-14T22:13:20+00:00"), True),
        (cond("Created_Time", "equals", "2023-11-15T00:13:20+02:00"), True),
        (cond("Created_Time", "greater_than", "2023-11-14T22:13:20+00:00"), False),
        (cond("Created_Time", "less_equal", "2023-11-14T22:13:20+00:00"), True),
        (cond("Created_Time", "less_than", "2023-11-14T22:13:20+00:00"), False),
        (cond("id", "equals", 5725767000000524157), True),
        (Group("or", ()), False),
        (Group("and", ()), True),
    ],
)
def test_evaluate(node: Node, expected: bool) -> None:
    assert evaluate(node, RECORD) is expected
    sql_ids = run_sqlite(node, FIELDS, [RECORD])
    assert (RECORD["id"] in sql_ids) is expected


def test_evaluate_without_data_type_uses_fields_or_guesses() -> None:
    plain = Condition("Last_Name", "equals", ("O'BRIEN",))
    assert evaluate(plain, RECORD, FIELDS)
    assert evaluate(plain, RECORD)
    assert evaluate(Condition("Tags", "in", ("WEB",)), RECORD)


def test_evaluate_rejects_bad_nodes() -> None:
    with pytest.raises(CriteriaError):
        evaluate(cond("Employees", "starts_with", "1"), RECORD)
    with pytest.raises(CriteriaError):
        evaluate(cond("Employees", "between", 1), RECORD)
    with pytest.raises(CriteriaError):
        evaluate(cond("Employees", "equals", "12"), RECORD)


# -- compile_sql ---------------------------------------------------------------------------------


def test_compile_rejects_unknown_and_unsafe_field_names() -> None:
    unsafe = {"a'b": "text", 'x"); DROP TABLE records; --': "text", "Items": "subform"}
    for name in ("Nope", *unsafe):
        for dialect in ("sqlite", "postgres"):
            with pytest.raises(CriteriaError) as exc:
                compile_sql(Condition(name, "equals", ("x",)), dialect, {**FIELDS, **unsafe})
            assert exc.value.details["api_name"] == name


def test_compile_never_puts_values_in_sql_text() -> None:
    evil = "x'); DROP TABLE records; --"
    node = Group(
        "or",
        (
            cond("Last_Name", "starts_with", evil),
            cond("Tags", "in", evil, "b"),
            cond("Account", "equals", "42"),
            cond("Due", "equals", "2024-01-01"),
        ),
    )
    for dialect in ("sqlite", "postgres"):
        sql, params = compile_sql(node, dialect, FIELDS)
        assert "DROP" not in sql and "42" not in sql and "2024" not in sql
        assert params == [
            "x'); drop table records; --%",
            "x'); drop table records; --",
            "b",
            "42",
            "2024-01-01",
        ]


def test_compile_sqlite_numbering_and_alias() -> None:
    node = Group(
        "and",
        (cond("Employees", "in", 1, 2), cond("Created_Time", "less_than", "2023-11-14T22:13:20Z")),
    )
    sql, params = compile_sql(node, "sqlite", FIELDS, param_start=4, table="r")
    assert re.findall(r"\?(\d+)", sql) == ["4", "5", "6"]
    assert params == [1, 2, 1_700_000_000_000]
    assert "r.data" in sql and "r.created_time" in sql
    with pytest.raises(ValueError):
        compile_sql(node, "sqlite", FIELDS, table="r; --")
    with pytest.raises(ValueError):
        compile_sql(node, "mysql", FIELDS)  # type: ignore[arg-type]


def test_compile_postgres_shape() -> None:
    node = Group(
        "or",
        (
            cond("Amount", "between", 0.1, 2.0),
            cond("id", "equals", 7),
            cond("Opt_Out", "equals", True),
        ),
    )
    sql, params = compile_sql(node, "postgres", FIELDS, param_start=3)
    assert re.findall(r"\$(\d+)::(\w+)", sql) == [
        ("3", "numeric"),
        ("4", "numeric"),
        ("5", "bigint"),
        ("6", "boolean"),
    ]
    assert params == [Decimal("0.1"), Decimal("2.0"), 7, True]
    assert "?" not in sql


# -- property tests ------------------------------------------------------------------------------

PFIELDS: dict[str, str] = {
    "id": "bigint",
    "Created_Time": "datetime",
    "Modified_Time": "datetime",
    "Name": "text",
    "Notes": "textarea",
    "Stage": "picklist",
    "Tags": "multiselectpicklist",
    "Count": "integer",
    "Big": "bigint",
    "Amount": "currency",
    "Ratio": "double",
    "Active": "boolean",
    "Due": "date",
    "When": "datetime",
    "Account": "lookup",
    "Owner": "ownerlookup",
}
CATEGORY = {
    "text": "text",
    "textarea": "text",
    "picklist": "text",
    "multiselectpicklist": "multi",
    "integer": "number",
    "bigint": "number",
    "currency": "number",
    "double": "number",
    "boolean": "boolean",
    "date": "temporal",
    "datetime": "temporal",
    "lookup": "lookup",
    "ownerlookup": "lookup",
}
MISSING = object()
BASE_SECOND = 1_700_000_000

TEXT_POOL = ["", "a", "A", "ab", "aB", "Ab", "b%", "a_b", "a\\", "é", "É", "ß", "a'b"]
texts = st.sampled_from(TEXT_POOL) | st.text(alphabet="aAbB%_\\ éÉß'", max_size=4)
ints = st.integers(-3, 3) | st.integers(-(2**63), 2**63 - 1)
floats = st.sampled_from([0.0, -0.0, 0.1, 1.5, 2.0, -1.5, 1e16]) | st.floats(
    allow_nan=False, allow_infinity=False
)
dates = (st.dates(date(2024, 1, 1), date(2024, 1, 4)) | st.dates()).map(date.isoformat)
moments = st.integers(-3, 3).map(lambda s: datetime.fromtimestamp(BASE_SECOND + s, UTC))
utc_texts = (
    moments
    | st.datetimes(datetime(1900, 1, 1), datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)
    )
).map(lambda d: d.isoformat())
ids = st.sampled_from(["1", "2", "3", "10"])
offsets = st.integers(-12, 12).map(lambda h: timezone(timedelta(hours=h)))
epoch_values = st.builds(lambda m, tz: m.astimezone(tz).isoformat(), moments, offsets)
junk = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.booleans(),
    texts,
    st.lists(texts, max_size=2),
    st.builds(lambda i: {"id": i}, st.integers(1, 3) | ids),
)


def stored_value(data_type: str) -> st.SearchStrategy[object]:
    proper: st.SearchStrategy[object] = {
        "text": texts,
        "textarea": texts,
        "picklist": texts,
        "multiselectpicklist": st.lists(texts, max_size=3),
        "integer": ints,
        "bigint": ints,
        "currency": floats,
        "double": floats,
        "boolean": st.booleans(),
        "date": dates,
        "datetime": utc_texts,
        "lookup": st.builds(lambda i: {"id": i, "name": "n"}, ids),
        "ownerlookup": st.builds(lambda i: {"id": i, "name": "n"}, ids),
    }[data_type]
    return st.one_of(st.just(MISSING), proper, proper, proper, junk)


def _record(row: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in row.items() if v is not MISSING}


record = st.fixed_dictionaries(
    {
        "id": st.integers(1, 2**62),
        "Created_Time": st.builds(
            lambda s, ms: (BASE_SECOND + s) * 1000 + ms,
            st.integers(-3, 3),
            st.sampled_from([0, 1, 500, 999]),
        ),
        "Modified_Time": st.integers(-(2**40), 2**41)
        | st.integers(-3000, 3000).map(lambda d: BASE_SECOND * 1000 + d),
        **{
            name: stored_value(data_type)
            for name, data_type in PFIELDS.items()
            if name not in ("id", "Created_Time", "Modified_Time")
        },
    }
).map(_record)


def records() -> st.SearchStrategy[list[dict[str, object]]]:
    return st.lists(record, min_size=4, max_size=7, unique_by=lambda r: r["id"])


def _criteria_values(name: str, data_type: str) -> st.SearchStrategy[object]:
    if name in ("Created_Time", "Modified_Time"):
        return epoch_values
    return {
        "text": texts,
        "multi": texts,
        "boolean": st.booleans(),
        "lookup": ids,
        "number": ints if data_type in ("integer", "bigint") else floats | ints,
        "temporal": dates if data_type == "date" else utc_texts,
    }[CATEGORY[data_type]]


CRITERIA_VALUES = {name: _criteria_values(name, t) for name, t in PFIELDS.items()}
"""Values to compare each field with (ints and floats alike for currency / double)."""
WIRE_VALUES = {
    **CRITERIA_VALUES,
    **{n: texts.filter(bool) for n, t in PFIELDS.items() if CATEGORY[t] in ("text", "multi")},
    **{n: floats for n, t in PFIELDS.items() if t in ("currency", "double")},
}
"""Values that survive a trip through the wire syntaxes unchanged."""


def _category_of(name: str) -> str:
    return "epoch" if name in ("Created_Time", "Modified_Time") else CATEGORY[PFIELDS[name]]


ALL_OPS = sorted(set().union(*EVAL_OPS.values()))
FIELDS_FOR_OP = {
    op: sorted(n for n in PFIELDS if op in EVAL_OPS[_category_of(n)]) for op in ALL_OPS
}


@st.composite
def leaves(draw: st.DrawFn) -> Condition:
    op = draw(st.sampled_from(ALL_OPS))
    name = draw(st.sampled_from(FIELDS_FOR_OP[op]))
    data_type = PFIELDS[name]
    values = CRITERIA_VALUES[name]
    if op in ("is_empty", "is_not_empty"):
        vals: list[object] = []
    elif op in ("between", "not_between"):
        vals = [draw(values), draw(values)]
    elif op in ("in", "not_in"):
        vals = draw(st.lists(values, min_size=1, max_size=3))
    else:
        vals = [draw(values)]
    return Condition(name, op, tuple(vals), data_type)


trees: st.SearchStrategy[Node] = st.recursive(
    leaves(),
    lambda kids: st.builds(
        lambda op, items: Group(op, tuple(items)),
        st.sampled_from(["and", "or"]),
        st.lists(kids, max_size=3),
    ),
    max_leaves=5,
)


def row_for(rec: Mapping[str, object]) -> tuple[object, ...]:
    data = {k: v for k, v in rec.items() if k not in ("id", "Created_Time", "Modified_Time")}
    return rec["id"], rec["Created_Time"], rec["Modified_Time"], json.dumps(data)


_DB = sqlite3.connect(":memory:", check_same_thread=False)
_DB.execute(
    "CREATE TABLE records (id INTEGER PRIMARY KEY, org_id INTEGER, "
    "created_time INTEGER NOT NULL, modified_time INTEGER NOT NULL, data TEXT NOT NULL)"
)


def run_sqlite(
    node: Node,
    fields: Mapping[str, str],
    recs: list[dict[str, object]],
    *,
    start: int = 1,
    alias: str | None = None,
) -> set[object]:
    sql, params = compile_sql(node, "sqlite", fields, param_start=start, table=alias)
    with _DB:
        _DB.execute("DELETE FROM records")
        _DB.executemany(
            "INSERT INTO records (id, created_time, modified_time, data) VALUES (?, ?, ?, ?)",
            [row_for(r) for r in recs],
        )
    source = f"records AS {alias}" if alias else "records"
    column = f"{alias}.id" if alias else "id"
    padding: list[object] = [None] * (start - 1) if params else []
    rows = _DB.execute(f"SELECT {column} FROM {source} WHERE {sql}", padding + params)
    return {r[0] for r in rows}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(node=trees, recs=records(), start=st.integers(1, 4), alias=st.sampled_from([None, "r"]))
def test_sqlite_matches_evaluate(
    node: Node, recs: list[dict[str, object]], start: int, alias: str | None
) -> None:
    expected = {r["id"] for r in recs if evaluate(node, r)}
    assert run_sqlite(node, PFIELDS, recs, start=start, alias=alias) == expected


@settings(max_examples=100, deadline=None)
@given(node=trees, start=st.integers(1, 50))
def test_postgres_placeholders_are_well_formed(node: Node, start: int) -> None:
    sql, params = compile_sql(node, "postgres", PFIELDS, param_start=start)
    numbers = [int(n) for n in re.findall(r"\$(\d+)", sql)]
    assert numbers == list(range(start, start + len(params)))
    assert len(re.findall(r"\$\d+::(?:text|numeric|bigint|boolean)\b", sql)) == len(params)
    assert "?" not in sql
    assert sql.count("(") == sql.count(")")
    for p in params:
        assert isinstance(p, str | bool | int | Decimal)
        if isinstance(p, str) and len(p) > 3:
            assert p not in sql


# -- round trips through the wire syntaxes -------------------------------------------------------

SEARCHABLE = {k: v for k, v in PFIELDS.items() if k not in ("Created_Time", "Modified_Time")}
search_texts = (
    st.text(alphabet="aAéZ09 (),\\:%_-'", min_size=1, max_size=6).map(str.strip).filter(bool)
)


@st.composite
def search_leaves(draw: st.DrawFn) -> Condition:
    name = draw(st.sampled_from(sorted(SEARCHABLE)))
    data_type = SEARCHABLE[name]
    op = draw(st.sampled_from(sorted(SEARCH_OPS[data_type])))
    values = search_texts if CATEGORY[data_type] in ("text", "multi") else WIRE_VALUES[name]
    count = 2 if op == "between" else draw(st.integers(1, 3)) if op == "in" else 1
    return Condition(name, op, tuple(draw(values) for _ in range(count)), data_type)


def search_trees() -> st.SearchStrategy[Node]:
    return st.recursive(
        search_leaves(),
        lambda kids: st.builds(
            lambda op, items: Group(op, tuple(items)),
            st.sampled_from(["and", "or"]),
            st.lists(kids, min_size=2, max_size=3),
        ),
        max_leaves=10,
    )


def render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    for c in "\\(),":
        text = text.replace(c, "\\" + c)
    return text


def render_search(node: Node) -> str:
    if isinstance(node, Group):
        return "(" + node.op.join(render_search(i) for i in node.items) + ")"
    return f"({node.field}:{node.op}:{','.join(render_value(v) for v in node.values)})"


@settings(max_examples=150, deadline=None)
@given(node=search_trees())
def test_search_round_trip(node: Node) -> None:
    assert parse_search(render_search(node), PFIELDS, max_conditions=100) == node


def render_bulk(node: Node) -> dict[str, Any]:
    if isinstance(node, Group):
        return {"group_operator": node.op, "group": [render_bulk(i) for i in node.items]}
    value: object
    if node.op in ("is_empty", "is_not_empty"):
        comparator, value = ("equal" if node.op == "is_empty" else "not_equal"), "${EMPTY}"
    else:
        comparator = "equal" if node.op == "equals" else node.op
        multi = node.op in ("in", "not_in", "between", "not_between")
        value = list(node.values) if multi else node.values[0]
    return {"field": {"api_name": node.field}, "comparator": comparator, "value": value}


BULKABLE = {k: v for k, v in PFIELDS.items() if k not in ("Created_Time", "Modified_Time")}


@st.composite
def bulk_leaves(draw: st.DrawFn) -> Condition:
    name = draw(st.sampled_from(sorted(BULKABLE)))
    data_type = BULKABLE[name]
    comparator = draw(st.sampled_from(BULK_OPS[data_type]))
    op = "equals" if comparator == "equal" else comparator
    if data_type != "boolean" and op in ("equals", "not_equal") and draw(st.booleans()):
        return Condition(name, "is_empty" if op == "equals" else "is_not_empty", (), data_type)
    values = WIRE_VALUES[name]
    multi = op in ("in", "not_in") and draw(st.integers(1, 3))
    count = 2 if op in ("between", "not_between") else multi or 1
    return Condition(name, op, tuple(draw(values) for _ in range(count)), data_type)


@settings(max_examples=150, deadline=None)
@given(
    node=st.recursive(
        bulk_leaves(),
        lambda kids: st.builds(
            lambda op, items: Group(op, tuple(items)),
            st.sampled_from(["and", "or"]),
            st.lists(kids, min_size=2, max_size=3),
        ),
        max_leaves=10,
    )
)
def test_bulk_round_trip(node: Node) -> None:
    wire = json.loads(json.dumps(render_bulk(node)))
    assert parse_bulk(wire, PFIELDS, max_conditions=100) == node


def test_strategies_reach_every_operator_of_every_category() -> None:
    # leaves() draws an operator uniformly, then a field whose category supports it
    assert {_category_of(n) for n in PFIELDS} == set(EVAL_OPS)
    reachable = {(op, _category_of(n)) for op, names in FIELDS_FOR_OP.items() for n in names}
    assert reachable == {(op, cat) for cat, ops in EVAL_OPS.items() for op in ops}


# -- robustness: anything in, a node or a CriteriaError out --------------------------------------

SEARCH_TOKENS = [
    "(",
    ")",
    "((",
    "))",
    "and",
    "or",
    " ",
    ":",
    ",",
    "\\",
    "\\,",
    "\\(",
    "Name",
    "Count",
    "Tags",
    "Due",
    "When",
    "Active",
    "Account",
    "Created_Time",
    "equals",
    "in",
    "between",
    "starts_with",
    "greater_than",
    "x",
    "1",
    "-2.5",
    "99999999999999999999",
    "true",
    "2024-01-01",
    "2024-01-01T10:00:00+05:30",
    "1e400",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["${EMPTY}", "equal", "in", "between", "and", "Name", "Count", "Due"]),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["field", "api_name", "comparator", "value", "group", "group_operator", "type"]
            ),
            kids,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def check_outcome(parse: Any, arg: object) -> None:
    try:
        node = parse(arg, PFIELDS)
    except CriteriaError as exc:
        json.dumps(exc.to_json(), allow_nan=False)
        return
    for dialect in ("sqlite", "postgres"):
        compile_sql(node, dialect, PFIELDS)
    evaluate(node, {"id": 1, "Created_Time": 0, "Modified_Time": 0})


def mutate_text(text: str, edits: list[tuple[int, int, str]]) -> str:
    for at, cut, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + cut :]
    return text


edits = st.lists(
    st.tuples(st.integers(0, 300), st.integers(0, 3), st.sampled_from(["", *SEARCH_TOKENS])),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(st.builds(mutate_text, search_trees().map(render_search), edits))
def test_parse_search_never_crashes(text: str) -> None:
    check_outcome(parse_search, text)


def mutate_json(obj: object, data: st.DataObject) -> object:
    if data.draw(st.integers(0, 5)) == 0:
        return data.draw(json_values)
    if isinstance(obj, dict):
        return {k: mutate_json(v, data) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mutate_json(v, data) for v in obj]
    return obj


bulk_trees = st.recursive(
    bulk_leaves(),
    lambda kids: st.builds(
        lambda op, items: Group(op, tuple(items)),
        st.sampled_from(["and", "or"]),
        st.lists(kids, min_size=2, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(bulk_trees.map(render_bulk), st.data())
def test_parse_bulk_never_crashes(obj: object, data: st.DataObject) -> None:
    check_outcome(parse_bulk, mutate_json(obj, data))


def nested_bulk(depth: int) -> dict[str, object]:
    """`depth` groups, each the first member of the one around it."""
    node: dict[str, object] = leaf("Last_Name", "equal", "A")
    for _ in range(depth):
        node = {"group_operator": "and", "group": [node, leaf("Last_Name", "equal", "B")]}
    return node


def test_one_depth_limit_for_search_and_bulk() -> None:
    """Both parsers stop at MAX_CRITERIA_DEPTH groups, with a Zoho-shaped error, long before
    Python's recursion limit (a RecursionError would be a 500)."""
    inner = "(Last_Name:equals:A)"
    for _ in range(MAX_CRITERIA_DEPTH - 1):
        inner = f"({inner}and(Last_Name:equals:B))"
    parse_search(inner, FIELDS, max_conditions=10**6)  # as deep as allowed
    with pytest.raises(CriteriaError) as exc:
        parse_search(f"({inner}and(Last_Name:equals:B))", FIELDS, max_conditions=10**6)
    assert "nested too deeply" in str(exc.value.details["reason"])
    for depth in (MAX_CRITERIA_DEPTH + 1, 480, 5000):
        with pytest.raises(CriteriaError) as exc:
            parse_bulk(nested_bulk(depth), FIELDS, max_conditions=10**6)
        code, details = error(exc)
        assert code == "INVALID_CRITERIA"
        assert details["limit"] == MAX_CRITERIA_DEPTH
        assert str(details["json_path"]).startswith("$.query.criteria.group[0].group[0]")
    parse_bulk(nested_bulk(MAX_CRITERIA_DEPTH), FIELDS, max_conditions=10**6)
