"""What every route can reach: settings, the store, the gate (auth), the clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from crmwatch.api.auth import Gate
from crmwatch.bulk.jobs import DownloadLimit
from crmwatch.config import Settings
from crmwatch.domain.addresses import AddressPolicy
from crmwatch.domain.errors import InvalidUrlPattern
from crmwatch.domain.versions import ApiVersion, parse_version


@dataclass
class AppState:
    settings: Settings
    store: Any
    gate: Gate
    delivery: Any = None
    """The DeliveryService of this process, when it runs workers."""
    bulk: Any = None
    """The BulkRunner of this process, when it runs workers."""
    bulk_downloads: DownloadLimit = field(init=False)
    """Bulk Read downloads per org and minute (in this process)."""
    policy: AddressPolicy = field(init=False)
    """Where webhooks and callbacks may go: URLs that can never be delivered are refused."""

    def __post_init__(self) -> None:
        self.bulk_downloads = DownloadLimit(self.settings.bulk_downloads_per_minute)
        self.policy = self.settings.address_policy()

    def wake_delivery(self) -> None:
        if self.delivery is not None:
            self.delivery.wake()

    @property
    def base_url(self) -> str:
        return self.settings.public_base_url

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)


def state(request: Request) -> AppState:
    return request.app.state.crm  # type: ignore[no-any-return]


def version(request: Request) -> ApiVersion:
    v = parse_version(request.path_params.get("version", ""))
    if v is None:
        raise InvalidUrlPattern()
    return v
