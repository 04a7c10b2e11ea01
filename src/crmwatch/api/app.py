"""The ASGI app: routers, Zoho-shaped errors for everything, store lifecycle."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from crmwatch.api import bulk as bulk_api
from crmwatch.api import deliveries, ext, metadata, oauth, openapi, records, watch
from crmwatch.api import digest as digest_api
from crmwatch.api.auth import Gate
from crmwatch.api.http import Guard, error_response
from crmwatch.api.state import AppState
from crmwatch.config import Settings
from crmwatch.domain.errors import (
    InternalError,
    InvalidRequestMethod,
    InvalidUrlPattern,
    LimitExceeded,
    ZohoError,
)
from crmwatch.store import tenants
from crmwatch.store.base import BudgetExceeded, StoreError

log = logging.getLogger("crmwatch")


async def _zoho_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ZohoError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(InvalidRequestMethod())
    if exc.status_code == 404:
        return error_response(InvalidUrlPattern())
    return error_response(ZohoError(str(exc.detail)))


async def _store_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BudgetExceeded):
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return error_response(LimitExceeded(
            "the write took longer than the server allows and was rolled back: nothing of "
            "it was written; send fewer records at once", limit=exc.budget_ms,
            setting="write_flow_budget_ms"))
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return error_response(InternalError("the database could not complete the request"))


def create_app(settings: Settings, store: Any) -> Starlette:
    """The app for `settings`, serving `store` (migrated on start-up)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await store.migrate()
        await store.start()
        await store.write(tenants.refresh_key_fields())
        key = await store.write(tenants.ensure_token_key())
        crm = AppState(settings, store, Gate(store, key, settings.token_cache_seconds))
        if settings.workers:
            from crmwatch.delivery.worker import DeliveryService

            crm.delivery = DeliveryService(settings, store)
            await crm.delivery.start()
            from crmwatch.bulk.runner import BulkRunner

            crm.bulk = BulkRunner(settings, store)
            await crm.bulk.start()
        app.state.crm = crm
        try:
            yield
        finally:
            if crm.bulk is not None:
                await crm.bulk.stop()
            if crm.delivery is not None:
                await crm.delivery.stop()
            await store.close()

    # Most traffic is records: their routes go first (their module names exclude the
    # API's own first segments), then everything else.
    routes = (records.special + records.routes + oauth.routes + ext.routes
              + deliveries.routes + openapi.routes + metadata.routes + watch.routes
              + bulk_api.routes + digest_api.routes)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={ZohoError: _zoho_error, HTTPException: _http_error,
                            StoreError: _store_error},
        middleware=[Middleware(Guard)],
    )
    return app
