"""Settings: one frozen dataclass, each field overridable by `CRMWATCH_<NAME>`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crmwatch.domain.addresses import AddressPolicy, local_only, parse_networks


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
    max_header_bytes: int = setting(
        32768, "Largest request head (request line and headers) accepted, in bytes; a larger "
               "one is answered 431 and its connection closed, before it is buffered.")
    header_timeout: float = setting(
        10.0, "Seconds a client has to send a whole request head, from opening the "
              "connection or from the first byte of the request; then the connection is "
              "closed (with 408 when part of a head came). 0: no limit.")
    body_timeout: float = setting(
        30.0, "Seconds a request body may stall (no byte while the server waits for more) "
              "before the connection is closed. 0: no limit.")
    keep_alive_timeout: int = setting(
        5, "Seconds an idle keep-alive connection stays open between requests.")
    max_connections: int = setting(
        1000, "Open connections (and requests in progress) at once in one process; beyond "
              "it requests are answered 503. 0: no limit.")
    backlog: int = setting(
        2048, "Connections the kernel queues for the server to accept (the listen "
              "backlog; the system's somaxconn caps it).")
    discrete_page_limit: int = setting(
        2000, "Records reachable with page-based listing (Zoho: 2000); 0 lifts the limit.")
    page_token_record_limit: int = setting(
        100_000, "Records reachable by following page_token in a record list or search "
                 "(Zoho: 100000); a token past it is answered PAGINATION_LIMIT_EXCEEDED. "
                 "0 lifts the limit.")
    token_cache_seconds: float = setting(
        30.0, "How long a checked access token is trusted without asking the database; a "
              "revocation made by another process takes at most this long to apply.")
    log_level: str = setting("info", "Log level: debug, info, warning, error.")
    access_log: bool = setting(False, "Log every request.")
    delivery_connect_timeout: float = setting(
        5.0, "Seconds a webhook attempt may take to open a connection (TCP and TLS).")
    delivery_timeout: float = setting(
        15.0, "Seconds a whole webhook attempt may take: resolve, connect, send, read the answer.")
    delivery_max_in_flight: int = setting(
        512, "Webhook requests in flight at once per process, over all receivers (the size "
             "of the keep-alive connection pool).")
    delivery_response_body_cap: int = setting(
        16384, "Bytes of a receiver's response body kept in the delivery log; the rest is "
               "not read.")
    delivery_ca_file: str = setting(
        "", "CA bundle (PEM) for verifying receivers' TLS certificates; default: the "
            "system's.")
    block_private_networks: bool | None = setting(
        None, "Refuse to deliver to private addresses (10/8, 172.16/12, 192.168/16, "
              "100.64/10, fc00::/7): true, false, or auto (the default): refused unless the "
              "server is local-only, listening on loopback with a loopback public URL. "
              "Link-local, cloud metadata, 0.0.0.0/8 and multicast addresses are always "
              "refused.")
    block_loopback: bool | None = setting(
        None, "Refuse to deliver to loopback addresses (127/8, ::1): true, false, or auto "
              "(the default): refused unless the server is local-only, as for "
              "block_private_networks.")
    denied_networks: str = setting(
        "", "More networks to refuse to deliver to: comma-separated CIDRs, e.g. "
            "10.20.0.0/16,2001:db8::/32.")
    max_channels_per_org: int = setting(
        100, "Live notification channels an org may have; enabling one more is refused "
             "with LIMIT_EXCEEDED for that item. 0: no limit.")

    workers: bool = setting(
        True, "Run the dispatcher and delivery workers in this process (serve); off with "
              "`serve --no-workers`, for API-only processes beside `crmwatch worker`.")
    retry_initial_seconds: float = setting(
        5.0, "Delay before the first retry of a failed webhook; doubles with each failure.")
    retry_max_delay_seconds: float = setting(3600.0, "Longest delay between two retries.")
    retry_window_seconds: float = setting(
        86400.0, "How long a failing webhook is retried after its first attempt before it is "
                 "marked dead (it stays in the delivery log, and can be redelivered).")
    delivery_lease_seconds: float = setting(
        30.0, "How long a worker's claim on a channel lasts without renewal; after a worker "
              "dies, its channels are taken over once this has passed.")
    channel_initial_concurrency: int = setting(
        8, "Webhook requests in flight at once to one channel, at first; it adapts to the "
           "receiver.")
    channel_max_concurrency: int = setting(
        256, "The most webhook requests in flight at once to one channel.")
    dispatch_poll_seconds: float = setting(
        0.05, "How often the dispatcher looks for journal events written by other processes "
              "(writes of its own process wake it at once).")
    delivery_flush_seconds: float = setting(
        0.005, "How long delivery outcomes are gathered before they are written together.")
    secret_grace_seconds: float = setting(
        86400.0, "After a signing-secret rotation, how long the old secret keeps signing too.")
    write_flow_budget_ms: int = setting(
        2000, "Longest time one API write (a batch of records) may take in the database; "
              "past it the write is rolled back and answered LIMIT_EXCEEDED, so that one "
              "costly request cannot hold SQLite's single writer, which every org shares. "
              "0: no limit.")
    bulk_results_dir: str = setting(
        "", "Where Bulk Read results (zip files) are written; default: `crmwatch-bulk/` "
            "beside the SQLite file, or `crmwatch-bulk-<uid>/` in the system's temporary "
            "directory for PostgreSQL. With several processes on several machines, a "
            "directory they all share. Created 0700, results 0600; a directory another user "
            "owns or may write is refused.")
    bulk_result_retention_hours: float = setting(
        24.0, "How long a Bulk Read result can be downloaded (and its next_page_token used) "
              "after the job completed; then the file is removed.")
    bulk_max_active_jobs: int = setting(
        10, "Bulk Read jobs an org may have waiting or running at once; more are refused "
            "with TOO_MANY_REQUESTS (429). 0: no limit.")
    bulk_downloads_per_minute: int = setting(
        10, "Bulk Read result downloads per org and minute in one process (Zoho: 10); the "
            "next answers 429 until a minute after the first. 0: no limit.")
    bulk_lease_seconds: float = setting(
        30.0, "How long a runner's claim on a Bulk Read job lasts without renewal; a job left "
              "by a runner that died is taken over once this has passed.")
    bulk_max_attempts: int = setting(
        3, "Runs a Bulk Read job gets before it is failed, when its runner keeps dying "
           "during the export.")

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

    def address_policy(self) -> AddressPolicy:
        """Where webhooks and callbacks may go (`block_*` settings, auto resolved)."""
        try:
            extra = parse_networks(self.denied_networks)
        except ValueError as exc:
            raise ValueError(f"{env_name('denied_networks')}: {exc}") from None
        return AddressPolicy.decide(
            self.block_private_networks, self.block_loopback, extra,
            local=local_only(self.host, self.public_base_url))


def env_name(name: str) -> str:
    return "CRMWATCH_" + name.upper()


def _convert(kind: Any, raw: str, name: str) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "bool | None" and raw.lower() == "auto":
            return None
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind in ("bool", "bool | None"):
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
