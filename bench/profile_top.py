"""Summarise py-spy collapsed stacks (`py-spy record --format raw`): where the time goes.

    python bench/profile_top.py PROFILE.txt [--top 25]

Prints the share of samples per thread, per area (HTTP server, framework, crmwatch layers,
drivers, event loop), and the top functions by self time and by inclusive time.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

AREAS: list[tuple[str, str]] = [
    ("crmwatch/api/", "crmwatch.api (routes, auth, JSON)"),
    ("crmwatch/domain/", "crmwatch.domain (validation, rendering)"),
    ("crmwatch/store/", "crmwatch.store (flows, drivers glue)"),
    ("crmwatch/", "crmwatch (other)"),
    ("asyncpg/", "asyncpg"),
    ("sqlite3", "sqlite3"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn (httptools protocol)"),
    ("httptools", "uvicorn (httptools protocol)"),
    ("uvloop", "uvloop / asyncio"),
    ("asyncio/", "uvloop / asyncio"),
    ("orjson", "orjson"),
    ("zoneinfo", "zoneinfo / datetime"),
    ("datetime", "zoneinfo / datetime"),
    ("threading.py", "threading"),
    ("queue.py", "threading"),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "src/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


def area(frames: list[str]) -> str:
    """The area of the innermost frame that belongs to a known area."""
    for frame in reversed(frames):
        for marker, name in AREAS:
            if marker in frame:
                return name
    return "other"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    stacks = parse(args.profile)
    total = sum(c for _, c in stacks)
    if not total:
        print("no samples")
        return 1
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else "?"
        body = frames[1:] if thread != "?" else frames
        body = [f for f in body if not f.startswith(("thread", "process"))]
        threads[thread] += count
        areas[area(body)] += count
        if body:
            self_time[short(body[-1])] += count
        for name in {short(f) for f in body}:
            inclusive[name] += count

    def show(title: str, counter: Counter[str], n: int) -> None:
        print(f"\n{title}")
        for name, count in counter.most_common(n):
            print(f"  {100 * count / total:5.1f}%  {name}")

    print(f"{args.profile}: {total} samples")
    show("by thread", threads, 10)
    show("by area (innermost known frame)", areas, 20)
    show("top self time", self_time, args.top)
    show("top inclusive time", inclusive, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
