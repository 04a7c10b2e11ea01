"""The server and credential options of every command that talks to a CRM (`bulk-read`,
`sync run`, `sync verify`): one definition, the same flags and `ZOHO_*` variables."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from crmwatch.client.zoho import Credentials, ZohoClient

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--api-version", default="v8", show_default=True),
    click.option("--api-url", envvar="ZOHO_API_URL", default=None, help="API base URL, e.g. "
                 "https://www.zohoapis.eu; default: the token answer's api_domain "
                 "[env: ZOHO_API_URL]."),
    click.option("--accounts-url", envvar="ZOHO_ACCOUNTS_URL", default=None, help="Base URL "
                 "of /oauth/v2/token, e.g. https://accounts.zoho.eu; default: --api-url "
                 "(crmwatch serves both) [env: ZOHO_ACCOUNTS_URL]."),
    click.option("--client-id", envvar="ZOHO_CLIENT_ID", required=True,
                 help="[env: ZOHO_CLIENT_ID]"),
    click.option("--client-secret", envvar="ZOHO_CLIENT_SECRET", required=True,
                 help="[env: ZOHO_CLIENT_SECRET]"),
    click.option("--refresh-token", envvar="ZOHO_REFRESH_TOKEN", required=True,
                 help="[env: ZOHO_REFRESH_TOKEN]"),
]


def server_options(f: F) -> F:
    """Add --api-version, --api-url, --accounts-url, --client-id, --client-secret and
    --refresh-token (keyword arguments of the same names) to a command."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


def check_server(api_version: str, api_url: str | None, accounts_url: str | None) -> None:
    """The usage errors of the server options."""
    if not re.fullmatch(r"v\d+(\.\d+)?", api_version):
        raise click.BadParameter("expected v2, v2.1, v3 ... v8", param_hint="--api-version")
    if not (accounts_url or api_url):
        raise click.UsageError("give --accounts-url (Zoho) or --api-url (crmwatch), or set "
                               "ZOHO_ACCOUNTS_URL / ZOHO_API_URL")


def make_client(api_url: str | None, accounts_url: str | None, client_id: str,
                client_secret: str, refresh_token: str, **kwargs: Any) -> ZohoClient:
    """A client for the server options' values (the accounts URL defaults to the API's)."""
    return ZohoClient(Credentials(client_id, client_secret, refresh_token),
                      accounts_url=accounts_url or api_url or "", api_url=api_url, **kwargs)
