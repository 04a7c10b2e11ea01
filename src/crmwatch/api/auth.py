"""Who is calling: access-token checks (cached), scope checks, and the caller's tenant."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from crmwatch.domain import scopes as sc
from crmwatch.domain.errors import AuthenticationFailure, InvalidToken, ScopeMismatch
from crmwatch.domain.modules import Module
from crmwatch.store import tenants
from crmwatch.store.tenants import Org, User

CATALOG_TTL = 1.0
"""Seconds a cached module catalog is trusted before its stamp is checked again."""


@dataclass
class Tenant:
    """An org as the API sees it: its users and modules, cached."""

    org: Org
    users: dict[int, User]
    modules: dict[str, Module]
    stamp: int
    checked: float
    field_types: dict[str, dict[str, str]] = field(default_factory=dict)

    def types(self, module: Module) -> dict[str, str]:
        found = self.field_types.get(module.api_name)
        if found is None:
            found = {f.api_name: f.data_type for f in module.fields}
            self.field_types[module.api_name] = found
        return found


@dataclass(frozen=True)
class Caller:
    tenant: Tenant
    user: User
    scopes: tuple[sc.Scope, ...]

    def require(self, family: str, name: str | None, operation: str) -> None:
        if not sc.allows(self.scopes, family, name, operation):
            raise ScopeMismatch()

    def may_read(self, module_name: str) -> bool:
        """Whether the caller may read records of the module (a subform's rows: of its
        parent); a module the org no longer has needs READ on every module."""
        module = self.tenant.modules.get(module_name)
        if module is None:
            return sc.allows(self.scopes, "modules", None, "READ")
        scoped = self.tenant.modules.get(module.parent or "") or module
        return sc.allows(self.scopes, "modules", scoped.scope_name, "READ")


class Gate:
    """Checks tokens and keeps tenants; one per app."""

    def __init__(self, store: Any, token_key: bytes, token_ttl: float) -> None:
        self.store = store
        self.key = token_key
        self.token_ttl = token_ttl
        self._tokens: dict[str, tuple[tenants.TokenInfo, tuple[sc.Scope, ...], float]] = {}
        self._tenants: dict[int, Tenant] = {}

    def forget_token(self, secret: str) -> None:
        self._tokens.pop(secret, None)

    def forget_all_tokens(self) -> None:
        self._tokens.clear()

    async def caller(self, request: Request) -> Caller:
        header = request.headers.get("authorization")
        if not header:
            raise AuthenticationFailure()
        scheme, _, secret = header.strip().partition(" ")
        if scheme.lower() not in ("zoho-oauthtoken", "bearer") or not secret.strip():
            raise AuthenticationFailure()
        secret = secret.strip()
        now = time.time()
        cached = self._tokens.get(secret)
        if cached is None or now - cached[2] > self.token_ttl:
            info = await self.store.read(tenants.get_token(self.key, secret))
            if info is None or info.kind != "access":
                self._tokens.pop(secret, None)
                raise InvalidToken()
            cached = (info, sc.parse_granted(info.scopes), now)
            if len(self._tokens) > 100_000:
                self._tokens.clear()
            self._tokens[secret] = cached
        info, scopes, _ = cached
        if info.revoked or (info.expires_time is not None and info.expires_time <= now * 1000):
            raise InvalidToken()
        tenant = await self.tenant(info.org_id)
        user = tenant.users.get(info.user_id)
        if user is None:
            raise InvalidToken()
        return Caller(tenant, user, scopes)

    async def tenant(self, org_id: int, *, fresh: bool = False) -> Tenant:
        now = time.monotonic()
        t = self._tenants.get(org_id)
        if t is not None and not fresh and now - t.checked < CATALOG_TTL:
            return t
        if t is not None and not fresh:
            stamp = await self.store.read(tenants.catalog_stamp(org_id))
            if stamp == t.stamp:
                t.checked = now
                return t
        org = await self.store.read(tenants.get_org(org_id))
        if org is None:
            raise InvalidToken()
        users = await self.store.read(tenants.list_users(org_id))
        modules, stamp = await self.store.read(tenants.load_catalog(org_id))
        t = Tenant(org, {u.id: u for u in users}, {m.api_name: m for m in modules}, stamp, now)
        self._tenants[org_id] = t
        return t
