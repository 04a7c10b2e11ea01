"""Settings: one frozen dataclass, each field overridable by `CRMWATCH_<NAME>`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    database_url: str = setting(
        "sqlite:///crmwatch.db",
        "Database: a SQLite file (sqlite:///path, the default ./crmwatch.db) or postgresql://...")
    host: str = setting("127.0.0.1", "Address the server listens on.")
    port: int = setting(8000, "Port the server listens on.")
    base_url: str = setting(
        "", "Public base URL (scheme://host:port) given to clients as api_domain and in "
            "resource URIs; default: derived from host, port and TLS.")
    ssl_certfile: str = setting("", "TLS certificate (PEM); with ssl_keyfile, serve https.")
    ssl_keyfile: str = setting("", "TLS private key (PEM).")
    max_body_bytes: int = setting(8 * 1024 * 1024, "Largest request body accepted, in bytes.")
    discrete_page_limit: int = setting(
        2000, "Records reachable with page-based listing (Zoho: 2000); 0 lifts the limit.")
    token_cache_seconds: float = setting(
        30.0, "How long a checked access token is trusted without asking the database; a "
              "revocation made by another process takes at most this long to apply.")
    log_level: str = setting("info", "Log level: debug, info, warning, error.")
    access_log: bool = setting(False, "Log every request.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Defaults, then `CRMWATCH_<NAME>` variables, then explicit overrides (not None)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _convert(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def public_base_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        scheme = "https" if self.ssl_certfile else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{scheme}://{host}:{self.port}"


def env_name(name: str) -> str:
    return "CRMWATCH_" + name.upper()


def _convert(kind: Any, raw: str, name: str) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"{env_name(name)}: cannot read {raw!r} as {kind}") from None
    return raw


def describe() -> list[tuple[str, str, Any, str]]:
    """(name, environment variable, default, help) for every setting, for docs and --help."""
    return [(f.name, env_name(f.name), f.default, f.metadata["help"])
            for f in dataclasses.fields(Settings)]
