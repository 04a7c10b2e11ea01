"""Run the unmodified Airbyte Zoho CRM connector against crmwatch (docs: clients.md 3.2).

Runs under the connector's own Python (`.venv-airbyte/bin/python airbyte_local.py check
--config C`). The connector's hosts are hard-coded in two class attributes; this replaces
them with maps that send every data-centre region to `CRMWATCH_BASE_URL`, then calls the
connector's own entry point. No file of the connector changes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

TABLES = ("_DC_REGION_TO_ACCESS_URL", "_DC_REGION_TO_API_URL")


def main() -> None:
    base = os.environ.get("CRMWATCH_BASE_URL", "").rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        sys.exit(f"CRMWATCH_BASE_URL must be scheme://host:port with no path, not {base!r}")

    from source_zoho_crm import api, run

    for name in TABLES:
        table = getattr(api.ZohoAPI, name, None)
        if not isinstance(table, Mapping) or not table:
            sys.exit(
                f"source_zoho_crm.api.ZohoAPI.{name} is gone: this connector version "
                "cannot be pointed at crmwatch by this wrapper"
            )
        setattr(api.ZohoAPI, name, MappingProxyType(dict.fromkeys(table, base)))
    run.run()


if __name__ == "__main__":
    main()
