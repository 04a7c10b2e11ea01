"""Record digests: how long `GET /crmwatch/v1/digest` takes over a whole module.

Seeds N Leads (default 200,000, ~20 populated fields each) exactly as bench/bulk_bench.py
does, reusing its cached seeded databases (same cache directory and keys), starts
`crmwatch serve` on a copy, and times digests of the whole module with every field:
`buckets=1`, `buckets=1000` and a sub-range of 1/1000 of the records with per-record buckets
(the second step of a bisection). The client and the server share this machine.

    .venv/bin/python bench/digest_bench.py [--records N] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bulk_bench as bb
import records_bench as rb


def timed_get(base: str, token: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    url = f"{base}/crmwatch/v1/digest?{urllib.parse.urlencode(params)}"
    t0 = time.monotonic()
    status, body = rb._http("GET", url, headers={"Authorization": f"Zoho-oauthtoken {token}"},
                            timeout=600)
    took = time.monotonic() - t0
    if status != 200:
        raise RuntimeError(f"digest answered {status}: {body[:300]!r}")
    return took, json.loads(body)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cache-dir", type=Path, default=Path("/var/tmp/crmwatch-bulk-bench"))
    p.add_argument("--reseed", action="store_true")
    args = p.parse_args(argv)
    opener = bb.sqlite_database if args.backend == "sqlite" else bb.postgres_database
    results: dict[str, Any] = {"records": args.records, "backend": args.backend,
                               "machine": bb.machine() if hasattr(bb, "machine") else None}
    with tempfile.TemporaryDirectory() as tmp, opener(args, Path(tmp)) as db:
        server = rb.Server(db.url, rb.free_port(), Path(tmp) / "server.log")
        server.start(timeout=600)
        try:
            token = rb.access_token(server.base_url, rb.credentials(db.url))
            runs: dict[str, list[float]] = {"buckets=1": [], "buckets=1000": [],
                                            "range 1/1000, per record": []}
            for _ in range(args.runs):
                took, one = timed_get(server.base_url, token, {"module": "Leads"})
                assert one["count"] == args.records, one["count"]
                runs["buckets=1"].append(took)
                took, many = timed_get(server.base_url, token,
                                       {"module": "Leads", "buckets": 1000})
                assert many["hash"] == one["hash"] and len(many["buckets"]) == 1000
                runs["buckets=1000"].append(took)
                b = many["buckets"][500]
                took, sub = timed_get(server.base_url, token, {
                    "module": "Leads", "from_id": b["from_id"], "to_id": b["to_id"],
                    "buckets": 10_000})
                assert sub["hash"] == b["hash"] and len(sub["buckets"]) == b["count"]
                runs["range 1/1000, per record"].append(took)
            results["fields"] = len(one["fields"])
            results["seconds"] = {k: [round(v, 2) for v in vs] for k, vs in runs.items()}
            results["records_per_s"] = round(args.records / min(runs["buckets=1"]))
        finally:
            server.stop()
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
