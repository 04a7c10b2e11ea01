"""Redaction: no credential survives in a log line; everything else does."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.api.server import RedactSecrets
from crmwatch.domain import tokens
from crmwatch.domain.redaction import MARK, redact

REFRESH = tokens.new_secret("refresh")
SECRET = tokens.new_secret("client_secret")


class TestRedact:
    @pytest.mark.parametrize(("line", "expected"), [
        ('127.0.0.1:5 - "POST /oauth/v2/token?grant_type=refresh_token&client_id=1000.AB'
         '&client_secret=s3cr3t&refresh_token=r1 HTTP/1.1" 200',
         '127.0.0.1:5 - "POST /oauth/v2/token?grant_type=refresh_token&client_id=1000.AB'
         f'&client_secret={MARK}&refresh_token={MARK} HTTP/1.1" 200'),
        ("/oauth/v2/token?code=abc&grant_type=authorization_code",
         f"/oauth/v2/token?code={MARK}&grant_type=authorization_code"),
        ("/oauth/v2/token?client%5Fsecret=abc&Token=x",
         f"/oauth/v2/token?client%5Fsecret={MARK}&Token={MARK}"),
        ("'query_string': b'token=abc&x=1'", f"'query_string': b'token={MARK}&x=1'"),
        ("(b'authorization', b'Zoho-oauthtoken abc.def')",
         f"(b'authorization', b'Zoho-oauthtoken {MARK}')"),
        ("Authorization: Bearer abc", f"Authorization: Bearer {MARK}"),
        ('{"authorization": "xyz"}', f'{{"authorization": "{MARK}"}}'),
        (f"token {REFRESH} and {SECRET}", f"token {MARK} and {MARK}"),
        ("/crm/v8/Leads?page=2&per_page=200&fields=Code,Token",
         "/crm/v8/Leads?page=2&per_page=200&fields=Code,Token"),
        ("/oauth/v2/token?code=&grant_type=x", "/oauth/v2/token?code=&grant_type=x"),
        ("database postgresql://crm:pa:ss@db:5432/crm)",
         f"database postgresql://crm:{MARK}@db:5432/crm)"),
        ("postgresql://crm@db/crm and http://host:8000/x", "postgresql://crm@db/crm and "
         "http://host:8000/x"),
    ])
    def test_lines(self, line: str, expected: str) -> None:
        assert redact(line) == expected

    @given(st.text(alphabet=st.characters(blacklist_characters="&'\" \t\n\r\x0b\x0c"
                                          "\x1c\x1d\x1e\x1f\x85\xa0"), min_size=1),
           st.sampled_from(["client_secret", "refresh_token", "code", "token", "access_token"]))
    def test_any_value_of_a_secret_parameter_is_gone(self, value: str, name: str) -> None:
        line = f'"GET /oauth/v2/token?a=1&{name}={value}&b=2 HTTP/1.1"'
        cleaned = redact(line)
        assert cleaned == f'"GET /oauth/v2/token?a=1&{name}={MARK}&b=2 HTTP/1.1"'


class TestFilter:
    def test_access_log_record_keeps_its_shape(self) -> None:
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:1", "POST", f"/oauth/v2/token?refresh_token={REFRESH}", "1.1", 200),
            None)
        assert RedactSecrets().filter(record)
        assert record.args == ("127.0.0.1:1", "POST", f"/oauth/v2/token?refresh_token={MARK}",
                               "1.1", 200)

    def test_traceback_and_non_string_arguments(self) -> None:
        try:
            raise ValueError(f"bad token {REFRESH}")
        except ValueError:
            import sys

            record = logging.LogRecord("crmwatch", logging.ERROR, __file__, 1, "scope %s",
                                       ({"headers": [(b"authorization", b"Bearer abc")]},),
                                       sys.exc_info())
        assert RedactSecrets().filter(record)
        text = logging.Formatter().format(record)
        assert REFRESH not in text and "abc" not in text and MARK in text
