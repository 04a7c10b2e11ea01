"""Bad input to the Notification API and the delivery log: Zoho's error shape, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_bad_input import assert_error

NOT_ASCII_DIGITS = ["²", "１２", "١"]
"""`str.isdigit()` holds for each; `int()` refuses the first."""


class TestNumbersInParameters:
    """Page numbers and ids are ASCII digits; other digits are refused, not a crash."""

    @pytest.mark.parametrize("path", ["/crm/v8/actions/watch", "/crmwatch/v1/deliveries"])
    def test_page_and_per_page(self, api: httpx.Client, path: str) -> None:
        for name in ("page", "per_page"):
            for raw in NOT_ASCII_DIGITS:
                assert_error(api.get(path, params={name: raw}), 400, "INVALID_DATA")
        assert api.get(path).status_code == 204  # the connection is still usable

    def test_delivery_id(self, api: httpx.Client) -> None:
        for raw in NOT_ASCII_DIGITS:
            assert_error(api.get(f"/crmwatch/v1/deliveries/{raw}"), 404,
                         "INVALID_URL_PATTERN")
            assert_error(api.post(f"/crmwatch/v1/deliveries/{raw}/redeliver"), 404,
                         "INVALID_URL_PATTERN")


class TestRedeliverUnknown:
    """Redelivering a delivery that does not exist is 404, as reading it is."""

    def test_unknown_id(self, api: httpx.Client) -> None:
        assert_error(api.get("/crmwatch/v1/deliveries/12345"), 404, "INVALID_URL_PATTERN")
        assert_error(api.post("/crmwatch/v1/deliveries/12345/redeliver"), 404,
                     "INVALID_URL_PATTERN")
