"""Flows for orgs, users, module catalogs, OAuth clients and tokens."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from crmwatch.domain import clock, tokens
from crmwatch.domain.modules import Module, assign_ids, load_modules, module_to_doc
from crmwatch.store.base import Flow, NextIds, Query


@dataclass(frozen=True, slots=True)
class Org:
    id: int
    name: str
    timezone: str
    id_prefix: int
    zgid: str
    created_time: int

    @classmethod
    def from_row(cls, row: Sequence[object]) -> Org:
        return cls(int(row[0]), str(row[1]), str(row[2]), int(row[3]),  # type: ignore[call-overload]
                   str(row[4]), int(row[5]))  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class User:
    id: int
    full_name: str
    email: str

    def lookup(self) -> dict[str, str]:
        return {"name": self.full_name, "id": str(self.id), "email": self.email}


@dataclass(frozen=True, slots=True)
class Credentials:
    org: Org
    user: User
    client_id: str
    client_secret: str
    refresh_token: str
    scopes: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    kind: str
    client_id: str
    scopes: str
    expires_time: int | None
    revoked: bool
    org_id: int
    user_id: int
    parent_hash: str | None


def ids_for(prefix: int, counters: Iterable[int]) -> list[int]:
    return [clock.make_id(prefix, c) for c in counters]


def ensure_token_key() -> Flow[bytes]:
    """The server's HMAC key for stored secrets, created on first use."""
    value = yield Query("get_meta", ("token_key",), "val")
    if value is None:
        value = secrets.token_hex(32)
        yield Query("put_meta", ("token_key", value))
    return bytes.fromhex(value)


def create_org(name: str, timezone: str, modules: list[Module], now_ms: int,
               email: str | None = None) -> Flow[Org]:
    """A new org with its admin user and the given module catalog."""
    existing = yield Query("org_by_name", (name,), "one")
    if existing is not None:
        raise ValueError(f"an org named {name!r} exists already")
    clock.zone(timezone)
    prefix = secrets.randbelow(clock.MAX_PREFIX - clock.MIN_PREFIX) + clock.MIN_PREFIX
    needed = 2 + sum(1 + len(m.fields) for m in modules)
    counters = yield NextIds(needed)
    pool = iter(ids_for(prefix, counters))
    org = Org(next(pool), name, timezone, prefix, str(secrets.randbelow(9 * 10**8) + 10**8),
              now_ms)
    yield Query("insert_org", (org.id, org.name, org.timezone, org.id_prefix, org.zgid,
                               org.created_time))
    slug = "".join(c for c in name.lower() if c.isalnum()) or "org"
    yield Query("insert_user", (next(pool), org.id, f"{name} Admin",
                                email or f"admin@{slug}.example.com", now_ms))
    saved = []
    for position, m in enumerate(modules):
        m = assign_ids(m, lambda: next(pool))
        yield Query("put_module", (org.id, m.api_name, position,
                                   orjson.dumps(module_to_doc(m)).decode(), now_ms))
        saved.append(m)
    yield from update_key_fields(org.id, saved)
    return org


def find_org(name: str | None) -> Flow[Org]:
    """The org called `name`, or the only one when `name` is None."""
    if name is None:
        rows = yield Query("list_orgs", (), "all")
        if len(rows) != 1:
            raise LookupError("name an org (--org): there are " + str(len(rows)))
        return Org.from_row(rows[0])
    row = yield Query("org_by_name", (name,), "one")
    if row is None:
        raise LookupError(f"no org named {name!r}")
    return Org.from_row(row)


def list_orgs() -> Flow[list[Org]]:
    rows = yield Query("list_orgs", (), "all")
    return [Org.from_row(r) for r in rows]


def get_org(org_id: int) -> Flow[Org | None]:
    row = yield Query("org_columns", (org_id,), "one")
    return None if row is None else Org.from_row(row)


def list_users(org_id: int) -> Flow[list[User]]:
    rows = yield Query("list_users", (org_id,), "all")
    return [User(int(r[0]), r[1], r[2]) for r in rows]


def load_catalog(org_id: int) -> Flow[tuple[list[Module], int]]:
    """An org's modules, and the newest modification time among them."""
    rows = yield Query("list_modules", (org_id,), "all")
    modules = load_modules({"modules": [orjson.loads(r[0]) for r in rows]})
    stamp = max((int(r[1]) for r in rows), default=0)
    return modules, stamp


def catalog_stamp(org_id: int) -> Flow[int]:
    value = yield Query("catalog_stamp", (org_id,), "val")
    return int(value or 0)


def save_catalog(org: Org, modules: list[Module], now_ms: int) -> Flow[list[Module]]:
    """Store every module of an org's catalog, giving ids to new modules and fields, and
    keep its key fields (the record_keys index) in step."""
    needed = sum((0 if m.id else 1) + sum(1 for f in m.fields if not f.id) for m in modules)
    counters = (yield NextIds(needed)) if needed else []
    pool = iter(ids_for(org.id_prefix, counters))
    saved = []
    for position, m in enumerate(modules):
        m = assign_ids(m, lambda: next(pool))
        yield Query("put_module", (org.id, m.api_name, position,
                                   orjson.dumps(module_to_doc(m)).decode(), now_ms))
        saved.append(m)
    yield from update_key_fields(org.id, saved)
    return saved


def key_field_changes(current: set[tuple[str, str]], modules: list[Module]
                      ) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(module, field) pairs to add to and to drop from an org's key fields, for its
    catalog `modules` (every module of the org)."""
    wanted = {(m.api_name, f) for m in modules for f in m.keyed}
    return wanted - current, current - wanted


def update_key_fields(org_id: int, modules: list[Module]) -> Flow[int]:
    """Bring the org's key fields in step with its catalog: a field that becomes a key
    field gets its records' values indexed, one that stops being one loses them. Returns
    how many fields changed."""
    rows = yield Query("list_key_fields", (org_id,), "all")
    add, drop = key_field_changes({(str(r[0]), str(r[1])) for r in rows}, modules)
    for module, field in sorted(drop):
        yield Query("drop_key_field", (org_id, module, field))
        yield Query("drop_field_keys", (org_id, module, field))
    for module, field in sorted(add):
        yield Query("add_key_field", (org_id, module, field))
        yield Query("fill_field_keys", (org_id, module, field))
    return len(add) + len(drop)


def refresh_key_fields() -> Flow[int]:
    """`update_key_fields` for every org (at start: a database migrated from before key
    fields existed, or whose key-field rules changed with this version)."""
    orgs = yield Query("list_orgs", (), "all")
    changed = 0
    for row in orgs:
        modules, _ = yield from load_catalog(int(row[0]))
        changed += yield from update_key_fields(int(row[0]), modules)
    return changed


def create_client(org: Org, scopes: str, name: str, now_ms: int) -> Flow[Credentials]:
    """A Zoho-style self client with a refresh token, for the org's admin user."""
    hkey = yield from ensure_token_key()
    users = yield from list_users(org.id)
    user = users[0]
    client_id = tokens.new_secret("client_id")
    client_secret = tokens.new_secret("client_secret")
    refresh = tokens.new_secret("refresh")
    yield Query("insert_client", (client_id, org.id, user.id,
                                  tokens.digest(hkey, client_secret), scopes, name, now_ms))
    yield Query("insert_token", (tokens.digest(hkey, refresh), "refresh", client_id, None,
                                 scopes, now_ms, None))
    return Credentials(org, user, client_id, client_secret, refresh, scopes)


def create_grant(client_id: str, scopes: str | None, now_ms: int) -> Flow[str]:
    """A one-time grant code for the authorization_code flow."""
    hkey = yield from ensure_token_key()
    row = yield Query("get_client", (client_id,), "one")
    if row is None:
        raise LookupError(f"no client {client_id!r}")
    code = tokens.new_secret("grant")
    yield Query("insert_token", (tokens.digest(hkey, code), "grant", client_id, None,
                                 scopes or row[4], now_ms,
                                 now_ms + tokens.GRANT_CODE_SECONDS * 1000))
    return code


def get_token(hkey: bytes, secret: str) -> Flow[TokenInfo | None]:
    row = yield Query("get_token", (tokens.digest(hkey, secret),), "one")
    if row is None:
        return None
    revoked = row[4] is not None or row[8] is not None
    return TokenInfo(row[0], row[1], row[2], row[3], revoked, int(row[5]), int(row[6]), row[7])


def _token_error(code: str) -> dict[str, object]:
    return {"error": code}


def issue_token(hkey: bytes, params: dict[str, str], now_ms: int,
                api_domain: str) -> Flow[dict[str, object]]:
    """The token endpoint: `refresh_token` and `authorization_code` grants, Zoho's answers.

    Errors are `{"error": code}` objects (Zoho sends them with HTTP 200).
    """
    grant = params.get("grant_type", "")
    client_id = params.get("client_id", "")
    if grant not in ("refresh_token", "authorization_code"):
        return _token_error("unsupported_grant_type" if grant else "invalid_request")
    row = (yield Query("get_client", (client_id,), "one")) if client_id else None
    if row is None:
        return _token_error("invalid_client")
    if not tokens.same(hkey, params.get("client_secret", ""), row[3]):
        return _token_error("invalid_client_secret")
    answer: dict[str, object] = {}
    if grant == "refresh_token":
        refresh = params.get("refresh_token", "")
        info = (yield from get_token(hkey, refresh)) if refresh else None
        if info is None or info.kind != "refresh" or info.revoked or info.client_id != client_id:
            return _token_error("invalid_code")
    else:
        code = params.get("code", "")
        info = (yield from get_token(hkey, code)) if code else None
        if (info is None or info.kind != "grant" or info.revoked or info.client_id != client_id
                or (info.expires_time is not None and info.expires_time <= now_ms)):
            return _token_error("invalid_code")
        # The code is spent by whoever updates its row: a concurrent exchange that read it
        # unused before that commit updates nothing here and is refused.
        if (yield Query("use_grant", (tokens.digest(hkey, code), now_ms), "val")) is None:
            return _token_error("invalid_code")
        refresh = tokens.new_secret("refresh")
        yield Query("insert_token", (tokens.digest(hkey, refresh), "refresh", client_id, None,
                                     info.scopes, now_ms, None))
        answer["refresh_token"] = refresh
    parent = tokens.digest(hkey, refresh)
    live = yield Query("live_access_tokens", (parent,), "all")
    for old in live[tokens.MAX_ACCESS_PER_REFRESH - 1:]:
        yield Query("revoke_token", (old[0], now_ms))
    access = tokens.new_secret("access")
    yield Query("insert_token", (tokens.digest(hkey, access), "access", client_id, parent,
                                 info.scopes, now_ms,
                                 now_ms + tokens.ACCESS_TOKEN_SECONDS * 1000))
    answer.update({"access_token": access, "scope": info.scopes,
                   "api_domain": api_domain, "token_type": "Bearer",
                   "expires_in": tokens.ACCESS_TOKEN_SECONDS})
    return answer


def revoke(hkey: bytes, secret: str, now_ms: int) -> Flow[bool]:
    """Revoke a refresh token (and every access token made from it) or one access token."""
    info = yield from get_token(hkey, secret)
    if info is None or info.kind == "grant":
        return False
    yield Query("revoke_token", (tokens.digest(hkey, secret), now_ms))
    return True
