"""`crmwatch sync verify`: prove that the mirror equals the source, or name the ids that differ.

Every mirrored field of every record counts (the canonical form of `crmwatch.digest`). From
crmwatch, digests are bisected (`sync.diffplan`): one digest request over the whole module
in FANOUT buckets, then one request per run of differing buckets, until the differing ids
are named. Against Zoho (no digest endpoint: asked, never assumed) or with `--plain-zoho`,
the records themselves are listed through the records API and compared one by one.

The ids found are then read again on both sides (by id), so that a change applied by a live
`sync run` meanwhile is not reported; with `--settle`, those still differing are looked at
once more after a pause. Without `--repair` nothing is written. With it, missing and stale
records are written as just read from the source, and extras that a by-id read shows gone
are removed, through the mirror interface (`Mirror.apply_fetched`, `apply_deleted`).

Exit status: 0 equal (or, with `--repair`, mended), 1 differences, 2 could not tell.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
import orjson

from crmwatch import digest
from crmwatch.client.options import check_server, make_client, server_options
from crmwatch.client.zoho import ApiError, ClientError, ZohoClient
from crmwatch.sync import diffplan
from crmwatch.sync.cli import database_option
from crmwatch.sync.diffplan import Ask, Bucket, Difference

FANOUT = 1000
"""Buckets of the first digest request (and of a range too large for per-record hashes)."""
PER_RECORD = 10_000
"""The most per-record hashes asked in one request (the endpoint's bucket limit)."""
MAX_FIELDS = 50
"""Fields per records-API request (Zoho's limit)."""


class CannotTell(Exception):
    """The comparison could not be made (server unreachable, mirror missing, ...)."""


@dataclass
class Report:
    module: str
    method: str
    """'digest' or 'records'."""
    fields: list[str]
    records: int = 0
    """Records at the source (as counted by the first digest or the listing)."""
    requests: int = 0
    differences: list[Difference] = field(default_factory=list)
    repaired: bool = False


# -- the source ---------------------------------------------------------------------------------

async def has_digest(zoho: ZohoClient, module: str) -> bool:
    """Whether the server answers crmwatch's digest endpoint for this module."""
    try:
        answer = await zoho.call("GET", "/crmwatch/v1/digest?" + urlencode(  # an empty range
            {"module": module, "fields": "id", "from_id": "1", "to_id": "1"}), retry=False)
    except ApiError as err:
        if err.status == 404 or err.code in ("INVALID_URL_PATTERN", "HTTP_404"):
            return False
        raise
    return isinstance(answer, dict) and answer.get("algorithm") == digest.ALGORITHM


async def source_digest(zoho: ZohoClient, module: str, fields: Sequence[str], ask: Ask
                        ) -> tuple[int, list[Bucket]]:
    params = {"module": module, "fields": ",".join(fields) or "id", "buckets": ask.buckets}
    if ask.from_id is not None:
        params["from_id"] = ask.from_id
    if ask.to_id is not None:
        params["to_id"] = ask.to_id
    answer = await zoho.call("GET", "/crmwatch/v1/digest?" + urlencode(params))
    if not isinstance(answer, dict) or answer.get("algorithm") != digest.ALGORITHM:
        raise CannotTell(f"{module}: the digest answer is not {digest.ALGORITHM}")
    if sorted(answer.get("fields") or []) != sorted(fields):
        raise CannotTell(f"{module}: the server hashed other fields than asked")
    return int(answer["count"]), [Bucket(str(b["from_id"]), str(b["to_id"]), int(b["count"]),
                                         str(b["hash"])) for b in answer["buckets"]]


def _chunks(fields: Sequence[str]) -> list[list[str]]:
    return [list(fields[i:i + MAX_FIELDS]) for i in range(0, len(fields), MAX_FIELDS)] or [[]]


async def source_by_ids(zoho: ZohoClient, module: str, ids: Sequence[str],
                        fields: Sequence[str], version: str) -> dict[str, dict[str, Any]]:
    """The records of `ids` that exist, as the records API shows them, with every field of
    `fields` (read in groups of at most 50 fields, merged by id)."""
    out: dict[str, dict[str, Any]] = {}
    for n, chunk in enumerate(_chunks(fields)):
        got = await zoho.get_records(module, ids, fields=chunk or ["id"], version=version)
        seen = {str(r.get("id")): r for r in got}
        # a record gone between two reads is gone
        out = seen if n == 0 else {i: {**r, **seen[i]} for i, r in out.items() if i in seen}
    return out


async def source_listing(zoho: ZohoClient, module: str, fields: Sequence[str], version: str
                         ) -> tuple[list[tuple[str, bytes]], int]:
    """(id, record hash over `fields`) of every record, ascending, listed through the records
    API (page tokens), and the number of requests."""
    out: list[tuple[str, bytes]] = []
    token: str | None = None
    page = 1
    requests = 0
    while True:
        data, info = await zoho.list_records(
            module, page_token=token, page=None if token else page, fields=list(fields) or ["id"],
            sort_by="id", sort_order="asc", version=version)
        requests += 1
        out += [(str(r["id"]), digest.record_hash(r, fields)) for r in data]
        if not data or not info.get("more_records"):
            break
        token = info.get("next_page_token") or None
        page += 1
    out.sort(key=lambda x: digest.id_key(x[0]))
    return out, requests


# -- the mirror ---------------------------------------------------------------------------------

def _sqlite_file(url: str) -> str | None:
    if not url.startswith("sqlite:"):
        return None
    rest = url.removeprefix("sqlite://")
    return rest[1:] if rest.startswith("/") else rest


def check_mirror_exists(url: str) -> None:
    """Refuse (CannotTell) a mirror that is not there, before anything could create it."""
    path = _sqlite_file(url)
    if path is None:
        return
    if not path or not Path(path).is_file():
        raise CannotTell(f"no mirror at {url}")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_sync_modules'"
                                 ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise CannotTell(f"{url}: {exc}") from exc
    if found is None:
        raise CannotTell(f"{url} is not a crmwatch mirror")


async def open_existing(url: str) -> Any:
    """The mirror at `url`, which must exist already (its own tables are not created)."""
    from crmwatch.sync.mirror import MirrorError, open_mirror

    check_mirror_exists(url)
    if url.startswith(("postgresql://", "postgres://")):
        import asyncpg

        try:
            conn = await asyncpg.connect(url)
            try:
                found = await conn.fetchval("SELECT to_regclass('_sync_modules') IS NOT NULL")
            finally:
                await conn.close()
        except (asyncpg.PostgresError, OSError) as exc:
            raise CannotTell(f"postgres: {exc}") from exc
        if not found:
            raise CannotTell(f"{url} is not a crmwatch mirror")
    try:
        return await open_mirror(url)
    except MirrorError as exc:
        raise CannotTell(str(exc)) from exc


async def mirror_hashes(mirror: Any, module: str, fields: Sequence[str],
                        from_id: str | None = None, to_id: str | None = None
                        ) -> list[tuple[str, bytes]]:
    return [(rid, digest.record_hash(rec, fields))
            async for rid, rec in mirror.iter_records(module, from_id, to_id)]


async def mirror_by_ids(mirror: Any, module: str, ids: Iterable[str]
                        ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i in ids:
        async for rid, rec in mirror.iter_records(module, i, i):
            out[rid] = rec
    return out


# -- comparing ----------------------------------------------------------------------------------

async def by_digests(zoho: ZohoClient, mirror: Any, report: Report) -> list[Difference]:
    """Bisect digests down to the differing ids."""
    module, fields = report.module, report.fields
    asks = [Ask(None, None, FANOUT)]
    found: list[Difference] = []
    first = True
    while asks:
        ask = asks.pop(0)
        count, buckets = await source_digest(zoho, module, fields, ask)
        report.requests += 1
        if first:
            report.records, first = count, False
        into = diffplan.MirrorBuckets(buckets)
        async for rid, rec in mirror.iter_records(module, ask.from_id, ask.to_id):
            into.add(rid, digest.record_hash(rec, fields))
        step = diffplan.compare(buckets, into.buckets(), into.outside, fanout=FANOUT,
                                per_record=PER_RECORD)
        found += step.differences
        asks += step.asks
    return diffplan.sort_differences(found)


async def by_records(zoho: ZohoClient, mirror: Any, report: Report, version: str
                     ) -> list[Difference]:
    """List every record through the records API (50 fields a pass) and compare."""
    found: list[Difference] = []
    for chunk in _chunks(report.fields):
        source, requests = await source_listing(zoho, report.module, chunk, version)
        report.requests += requests
        report.records = len(source)
        found += diffplan.merge_join(source, await mirror_hashes(mirror, report.module, chunk))
    return diffplan.sort_differences(found)


async def recheck(zoho: ZohoClient, mirror: Any, report: Report, ids: Sequence[str],
                  version: str) -> tuple[list[Difference], dict[str, dict[str, Any]]]:
    """Both sides read again by id: the differences that remain, and the source records."""
    source = await source_by_ids(zoho, report.module, ids, report.fields, version)
    report.requests += len(_chunks(report.fields)) * -(-len(ids) // 100)
    mine = await mirror_by_ids(mirror, report.module, ids)
    return diffplan.classify(
        ids, {i: digest.record_hash(r, report.fields) for i, r in source.items()},
        {i: digest.record_hash(r, report.fields) for i, r in mine.items()}), source


async def repair(mirror: Any, module: str, diffs: Sequence[Difference],
                 source: dict[str, dict[str, Any]]) -> None:
    fetched = [source[d.id] for d in diffs if d.kind != diffplan.EXTRA and d.id in source]
    gone = [d.id for d in diffs if d.kind == diffplan.EXTRA and d.id not in source]
    if fetched:
        await mirror.apply_fetched(module, fetched)
    if gone:
        await mirror.apply_deleted(module, gone, None)


async def verify_module(zoho: ZohoClient, mirror: Any, module: str, *, plain_zoho: bool,
                        do_repair: bool, settle: float, version: str) -> Report:
    mirrored = [f for f in await mirror.mirrored_fields(module) if f != "id"]
    if not mirrored:
        raise CannotTell(f"{module} is not mirrored in this database")
    at_source = {str(f.get("api_name")) for f in await zoho.fields(module, version=version)}
    fields = digest.normalize_fields(f for f in mirrored if f in at_source)
    use_digest = not plain_zoho and await has_digest(zoho, module)
    report = Report(module, "digest" if use_digest else "records", fields, requests=1)
    if use_digest:
        report.requests += 1
        found = await by_digests(zoho, mirror, report)
    else:
        found = await by_records(zoho, mirror, report, version)
    ids = [d.id for d in found]
    source: dict[str, dict[str, Any]] = {}
    if ids:
        found, source = await recheck(zoho, mirror, report, ids, version)
    if found and settle > 0:
        await asyncio.sleep(settle)
        found, source = await recheck(zoho, mirror, report, [d.id for d in found], version)
    report.differences = found
    if do_repair and found:
        await repair(mirror, module, found, source)
        left, _ = await recheck(zoho, mirror, report, [d.id for d in found], version)
        report.repaired = not left
    return report


async def verify(zoho: ZohoClient, database_url: str, modules: Sequence[str], *,
                 plain_zoho: bool = False, do_repair: bool = False, settle: float = 0.0,
                 version: str = "v8") -> list[Report]:
    """Compare each module (default: every mirrored one); CannotTell when that fails."""
    mirror = await open_existing(database_url)
    try:
        names = list(modules) or await mirror.mirrored_modules()
        if not names:
            raise CannotTell(f"{database_url} mirrors no module")
        reports = []
        for module in names:
            try:
                reports.append(await verify_module(
                    zoho, mirror, module, plain_zoho=plain_zoho, do_repair=do_repair,
                    settle=settle, version=version))
            except ClientError as exc:
                raise CannotTell(f"{module}: {exc}") from exc
        return reports
    finally:
        await mirror.close()


def exit_code(reports: Sequence[Report], repaired: bool) -> int:
    if all(not r.differences or (repaired and r.repaired) for r in reports):
        return 0
    return 1


# -- the command --------------------------------------------------------------------------------

@click.command("verify")
@click.option("--module", "modules", multiple=True,
              help="Module to verify (repeatable); default: every mirrored module.")
@database_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line per differing id.")
@click.option("--repair", "do_repair", is_flag=True,
              help="Re-read differing records into the mirror; remove those gone at the source.")
@click.option("--plain-zoho", is_flag=True,
              help="Use no crmwatch extension: compare the records through the records API.")
@click.option("--settle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Seconds after which ids still differing are looked at once more (a live "
              "`sync run` may be applying them); 0: no second look.")
@server_options
def command(modules: tuple[str, ...], database_url: str, as_json: bool, do_repair: bool,
            plain_zoho: bool, settle: float, api_version: str, api_url: str | None,
            accounts_url: str | None, client_id: str, client_secret: str,
            refresh_token: str) -> None:
    """Prove that the mirror equals the source, or list the ids that differ.

    One line per differing id: MODULE ID KIND (missing: at the source only; extra: in the
    mirror only; stale: both, values differ). Exit 0 when equal (with --repair: when mended),
    1 when not, 2 when it could not tell.
    """
    check_server(api_version, api_url, accounts_url)

    async def work() -> list[Report]:
        async with make_client(api_url, accounts_url, client_id, client_secret,
                               refresh_token, retries=2, max_backoff=2.0) as zoho:
            return await verify(zoho, database_url, modules, plain_zoho=plain_zoho,
                                do_repair=do_repair, settle=settle, version=api_version)

    try:
        reports = asyncio.run(work())
    except (CannotTell, ClientError) as exc:
        click.echo(f"verify: could not tell: {exc}", err=True)
        sys.exit(2)
    for r in reports:
        for d in r.differences:
            if as_json:
                item: dict[str, Any] = {"module": r.module, "id": d.id, "kind": d.kind}
                if do_repair:
                    item["repaired"] = r.repaired
                click.echo(orjson.dumps(item).decode())
            else:
                click.echo(f"{r.module} {d.id} {d.kind}")
        kinds = {k: sum(1 for d in r.differences if d.kind == k) for k in diffplan.KINDS}
        state = "equal" if not r.differences else ", ".join(
            f"{n} {k}" for k, n in kinds.items() if n)
        if r.differences and do_repair:
            state += ", repaired" if r.repaired else ", NOT all repaired"
        click.echo(f"{r.module}: {r.records} records, {len(r.fields)} fields, by {r.method} "
                   f"in {r.requests} requests: {state}", err=True)
    sys.exit(exit_code(reports, do_repair))
