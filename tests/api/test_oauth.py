"""OAuth token endpoint and token checks, as Zoho's clients need them."""

from __future__ import annotations

import httpx

from tests.conftest import Live, start_server


class TestTokenEndpoint:
    """`POST /oauth/v2/token` answers as Zoho Accounts does."""

    def test_refresh_grant_from_form_body(self, live: Live) -> None:
        r = httpx.post(live.base_url + "/oauth/v2/token", data={
            "refresh_token": live.refresh_token, "client_id": live.client_id,
            "client_secret": live.client_secret, "grant_type": "refresh_token"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json;charset=utf-8"
        body = r.json()
        assert set(body) == {"access_token", "scope", "api_domain", "token_type", "expires_in"}
        assert body["expires_in"] == 3600
        assert body["api_domain"] == live.base_url
        assert body["token_type"] == "Bearer"
        assert "ZohoCRM.modules.ALL" in body["scope"].split(" ")
        assert "expires_in_sec" not in body and "refresh_token" not in body

    def test_refresh_grant_from_query_string_with_empty_body(self, live: Live) -> None:
        r = httpx.post(live.base_url + "/oauth/v2/token", params={
            "refresh_token": live.refresh_token, "client_id": live.client_id,
            "client_secret": live.client_secret, "grant_type": "refresh_token"})
        assert "access_token" in r.json()

    def test_errors_are_zoho_shaped_with_http_200(self, live: Live) -> None:
        url = live.base_url + "/oauth/v2/token"
        base = {"refresh_token": live.refresh_token, "client_id": live.client_id,
                "client_secret": live.client_secret, "grant_type": "refresh_token"}
        cases = [
            ({**base, "client_id": "1000.NOPE"}, "invalid_client"),
            ({**base, "client_secret": "wrong"}, "invalid_client_secret"),
            ({**base, "refresh_token": "1000.bad.bad"}, "invalid_code"),
            ({**base, "grant_type": "password"}, "unsupported_grant_type"),
        ]
        for data, code in cases:
            r = httpx.post(url, data=data)
            assert r.status_code == 200
            assert r.json() == {"error": code}

    def test_authorization_code_is_one_time(self, live: Live) -> None:
        from crmwatch.store import tenants
        from tests.conftest import now_ms, run_flow

        code = run_flow(live.database_url, tenants.create_grant(live.client_id, None, now_ms()))
        data = {"grant_type": "authorization_code", "client_id": live.client_id,
                "client_secret": live.client_secret, "code": code,
                "redirect_uri": "http://localhost/cb"}
        first = httpx.post(live.base_url + "/oauth/v2/token", data=data).json()
        assert first["refresh_token"].startswith("1000.")
        assert first["access_token"]
        again = httpx.post(live.base_url + "/oauth/v2/token", data=data).json()
        assert again == {"error": "invalid_code"}
        r = httpx.get(live.base_url + "/crm/v8/org",
                      headers={"Authorization": f"Zoho-oauthtoken {first['access_token']}"})
        assert r.status_code == 200

    def test_concurrent_exchanges_of_one_code_give_one_refresh_token(self, live: Live) -> None:
        import asyncio

        from crmwatch.store import tenants
        from tests.conftest import now_ms, run_flow

        async def exchange_all(code: str) -> list[dict[str, str]]:
            data = {"grant_type": "authorization_code", "client_id": live.client_id,
                    "client_secret": live.client_secret, "code": code}
            async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as client:
                answers = await asyncio.gather(*[client.post("/oauth/v2/token", data=data)
                                                 for _ in range(8)])
            return [a.json() for a in answers]

        for _ in range(3):
            code = run_flow(live.database_url,
                            tenants.create_grant(live.client_id, None, now_ms()))
            answers = asyncio.run(exchange_all(code))
            won = [a for a in answers if "refresh_token" in a]
            assert len(won) == 1, answers
            assert [a for a in answers if a not in won] == [{"error": "invalid_code"}] * 7
            r = httpx.post(live.base_url + "/oauth/v2/token", data={
                "grant_type": "refresh_token", "client_id": live.client_id,
                "client_secret": live.client_secret,
                "refresh_token": won[0]["refresh_token"]})
            assert "access_token" in r.json()

    def test_multipart_form_bodies(self, live: Live) -> None:
        """Zoho's Node.js SDK sends multipart/form-data, to the token and revoke endpoints."""
        from crmwatch.store import tenants
        from tests.conftest import now_ms, run_flow

        url = live.base_url + "/oauth/v2/token"
        refresh = httpx.post(url, data={
            "grant_type": "refresh_token", "client_id": live.client_id,
            "client_secret": live.client_secret, "refresh_token": live.refresh_token},
            files={"unused": ("", b"")})
        assert refresh.request.headers["content-type"].startswith("multipart/form-data")
        assert "access_token" in refresh.json(), refresh.text
        code = run_flow(live.database_url, tenants.create_grant(live.client_id, None, now_ms()))
        # Each field as a part of its own, as the form-data package of Node.js writes them.
        parts = {"grant_type": (None, "authorization_code"), "client_id": (None, live.client_id),
                 "client_secret": (None, live.client_secret), "code": (None, code),
                 "redirect_uri": (None, "http://localhost/cb")}
        exchanged = httpx.post(url, files=parts)
        assert exchanged.request.headers["content-type"].startswith("multipart/form-data")
        first = exchanged.json()
        assert first["refresh_token"].startswith("1000.") and first["access_token"], first
        assert httpx.post(url, files=parts).json() == {"error": "invalid_code"}
        wrong = httpx.post(url, files={**parts, "client_secret": (None, "nope")})
        assert wrong.json() == {"error": "invalid_client_secret"}
        broken = httpx.post(url, content=b"--x\r\nnot a part", headers={
            "content-type": "multipart/form-data; boundary=x"})
        assert broken.status_code == 200 and broken.json() == {"error": "invalid_request"}

        revoked = httpx.post(url + "/revoke", files={"token": (None, first["refresh_token"])})
        assert revoked.json() == {"status": "success"}
        again = httpx.post(url, files={"grant_type": (None, "refresh_token"),
                                       "client_id": (None, live.client_id),
                                       "client_secret": (None, live.client_secret),
                                       "refresh_token": (None, first["refresh_token"])})
        assert again.json() == {"error": "invalid_code"}
        r = httpx.get(live.base_url + "/crm/v8/org",
                      headers={"Authorization": f"Zoho-oauthtoken {first['access_token']}"})
        assert r.status_code == 401

    def test_revocation_ends_refresh_and_access_tokens(self, live: Live) -> None:
        token = live.token()
        r = httpx.post(live.base_url + "/oauth/v2/token/revoke",
                       params={"token": live.refresh_token})
        assert r.json() == {"status": "success"}
        r = httpx.get(live.base_url + "/crm/v8/org",
                      headers={"Authorization": f"Zoho-oauthtoken {token}"})
        assert r.status_code == 401 and r.json()["code"] == "INVALID_TOKEN"
        again = httpx.post(live.base_url + "/oauth/v2/token", data={
            "refresh_token": live.refresh_token, "client_id": live.client_id,
            "client_secret": live.client_secret, "grant_type": "refresh_token"}).json()
        assert again == {"error": "invalid_code"}


class TestApiAuth:
    """Every API call needs a valid token with the right scope."""

    def test_missing_header(self, live: Live) -> None:
        r = httpx.get(live.base_url + "/crm/v8/Leads")
        assert r.status_code == 401
        assert r.json() == {"code": "AUTHENTICATION_FAILURE", "details": {},
                            "message": "Authentication failed", "status": "error"}

    def test_unknown_token(self, live: Live) -> None:
        r = httpx.get(live.base_url + "/crm/v8/Leads",
                      headers={"Authorization": "Zoho-oauthtoken 1000.abc.def"})
        assert r.status_code == 401
        assert r.json()["code"] == "INVALID_TOKEN"

    def test_scope_mismatch(self, live: Live) -> None:
        creds = live.new_client("ZohoCRM.modules.leads.READ")
        token = httpx.post(live.base_url + "/oauth/v2/token", data={
            "refresh_token": creds.refresh_token, "client_id": creds.client_id,
            "client_secret": creds.client_secret, "grant_type": "refresh_token"}
        ).json()["access_token"]
        h = {"Authorization": f"Zoho-oauthtoken {token}"}
        assert httpx.get(live.base_url + "/crm/v8/Leads", headers=h).status_code == 204
        for method, path in [("GET", "/crm/v8/Contacts"), ("POST", "/crm/v8/Leads"),
                             ("GET", "/crm/v8/settings/modules"), ("GET", "/crm/v8/org")]:
            r = httpx.request(method, live.base_url + path, headers=h,
                              content=b'{"data": [{"Last_Name": "X"}]}')
            assert r.status_code == 401, path
            assert r.json()["code"] == "OAUTH_SCOPE_MISMATCH"

    def test_tokens_survive_a_restart(self, database_url: str) -> None:
        first = start_server(database_url)
        token = first.token()
        first.stop()
        second = start_server(database_url, org=None)
        try:
            r = httpx.get(second.base_url + "/crm/v8/org",
                          headers={"Authorization": f"Zoho-oauthtoken {token}"})
            assert r.status_code == 200
        finally:
            second.stop()
