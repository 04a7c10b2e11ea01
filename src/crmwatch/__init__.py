"""crmwatch: a self-hosted, Zoho CRM wire-compatible records and change-notification server."""

from __future__ import annotations

__version__ = "0.1.0"
