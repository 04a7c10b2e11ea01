"""Signing: Standard Webhooks signatures."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmwatch.delivery import signing

# The test vector of the Standard Webhooks reference libraries
# (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


class TestSign:
    """Signatures match the reference vector, one per secret."""

    def test_reference_vector(self) -> None:
        assert signing.sign([VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG

    def test_prefix_optional(self) -> None:
        bare = VECTOR_SECRET.removeprefix("whsec_")
        assert signing.sign([bare], VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG

    def test_one_per_secret_during_rotation(self) -> None:
        other = signing.new_secret()
        value = signing.sign([other, VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
        first, second = value.split(" ")
        assert first.startswith("v1,") and first != VECTOR_SIG
        assert second == VECTOR_SIG

    def test_headers(self) -> None:
        assert signing.headers([VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY) == {
            "webhook-id": VECTOR_ID,
            "webhook-timestamp": str(VECTOR_TS),
            "webhook-signature": VECTOR_SIG,
        }

    def test_needs_a_secret(self) -> None:
        with pytest.raises(ValueError):
            signing.sign([], VECTOR_ID, VECTOR_TS, VECTOR_BODY)

    @pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", ""])
    def test_bad_secret(self, bad: str) -> None:
        with pytest.raises(ValueError):
            signing.sign([bad], VECTOR_ID, VECTOR_TS, VECTOR_BODY)


class TestNewSecret:
    """New secrets are whsec_ + base64 of 32 random bytes."""

    def test_shape(self) -> None:
        secret = signing.new_secret()
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
        assert signing.new_secret() != secret


def _headers(sig: str = VECTOR_SIG, ts: str = str(VECTOR_TS)) -> dict[str, str]:
    return {"webhook-id": VECTOR_ID, "webhook-timestamp": ts, "webhook-signature": sig}


class TestVerify:
    """Verification accepts any valid v1 signature within the tolerance, and nothing else."""

    def test_reference_vector(self) -> None:
        assert signing.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, VECTOR_TS)

    def test_header_names_any_case(self) -> None:
        headers = {k.title(): v for k, v in _headers().items()}
        assert signing.verify(VECTOR_SECRET, headers, VECTOR_BODY, VECTOR_TS)

    def test_tolerance(self) -> None:
        assert signing.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, VECTOR_TS + 300)
        assert signing.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, VECTOR_TS - 300)
        assert not signing.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, VECTOR_TS + 301)
        assert not signing.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, VECTOR_TS - 301)
        assert signing.verify(VECTOR_SECRET, _headers(), VECTOR_BODY, VECTOR_TS + 1000, 1000)

    def test_tampering(self) -> None:
        assert not signing.verify(VECTOR_SECRET, _headers(), b'{"test": 2432232315}', VECTOR_TS)
        bad = _headers(ts=str(VECTOR_TS + 1))
        assert not signing.verify(VECTOR_SECRET, bad, VECTOR_BODY, VECTOR_TS)
        other = {**_headers(), "webhook-id": "msg_other"}
        assert not signing.verify(VECTOR_SECRET, other, VECTOR_BODY, VECTOR_TS)
        assert not signing.verify(signing.new_secret(), _headers(), VECTOR_BODY, VECTOR_TS)

    def test_several_signatures(self) -> None:
        sig = " ".join(
            [
                "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                "garbage",
                "v1,not*base64",
                VECTOR_SIG,
            ]
        )
        assert signing.verify(VECTOR_SECRET, _headers(sig), VECTOR_BODY, VECTOR_TS)

    def test_wrong_version_only(self) -> None:
        sig = VECTOR_SIG.replace("v1,", "v2,")
        assert not signing.verify(VECTOR_SECRET, _headers(sig), VECTOR_BODY, VECTOR_TS)

    @pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_missing_header(self, missing: str) -> None:
        headers = _headers()
        del headers[missing]
        assert not signing.verify(VECTOR_SECRET, headers, VECTOR_BODY, VECTOR_TS)

    @pytest.mark.parametrize("ts", ["hello", "", "1614265330.5", "-1614265330", "１６"])
    def test_malformed_timestamp(self, ts: str) -> None:
        assert not signing.verify(VECTOR_SECRET, _headers(ts=ts), VECTOR_BODY, VECTOR_TS)

    @given(st.binary(max_size=200), st.text(min_size=1, max_size=30), st.integers(0, 2**40))
    def test_round_trip(self, body: bytes, msg_id: str, ts: int) -> None:
        old, new = signing.new_secret(), signing.new_secret()
        headers = signing.headers([new, old], msg_id, ts, body)
        assert signing.verify(old, headers, body, ts)
        assert signing.verify(new, headers, body, ts)
        assert not signing.verify(new, headers, body + b" ", ts)
