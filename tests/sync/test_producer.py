"""The snapshot's producer process: the same batches as converting in process, and its
failures (a broken zip, a killed child, a parent that stops early) end cleanly."""

from __future__ import annotations

import os
import signal
import time
import zipfile
from pathlib import Path

import pytest

from crmwatch.sync import cells
from crmwatch.sync.cells import FieldSpec
from crmwatch.sync.producer import Producer, ProducerError, iter_csv_batches

SPECS = [FieldSpec("id", "bigint"), FieldSpec("Last_Name", "text"),
         FieldSpec("Annual_Revenue", "currency"), FieldSpec("Email_Opt_Out", "boolean"),
         FieldSpec("Owner", "ownerlookup")]
USERS = {"900": cells.User("Ada Admin", "ada@example.com")}


def _zip(path: Path, rows: int) -> Path:
    lines = ["Id,Last_Name,Annual_Revenue,Email_Opt_Out,Owner"]
    lines += [f'{1000 + n},"Name, {n}",{n * 1.5},{"true" if n % 2 else "false"},900'
              for n in range(rows)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Leads.csv", "\r\n".join(lines) + "\r\n")
    return path


def _all(producer: Producer) -> list[cells.Batch]:
    out = []
    while (batch := producer.next()) is not None:
        out.append(batch)
    return out


def test_same_batches_as_in_process(tmp_path: Path) -> None:
    path = _zip(tmp_path / "p.zip", 2500)
    producer = Producer()
    producer.start()
    try:
        producer.begin(path, SPECS, USERS, 1000)
        got = _all(producer)
    finally:
        producer.close()
    want = []
    for header, rows in iter_csv_batches(path, 1000):
        plan, _ = cells.plan_for(SPECS, header)
        want.append(cells.snapshot_batch(SPECS, plan, rows, USERS))
    assert [len(b) for b in got] == [1000, 1000, 500]
    for g, w in zip(got, want, strict=True):
        assert g.records is None and g.columns == w.columns and g.texts == w.texts
        assert g.complete == w.complete
        assert [g.record(k) for k in range(len(g))] == w.records
    assert got[0].record(1)["Owner"] == {"name": "Ada Admin", "id": "900",
                                         "email": "ada@example.com"}


def test_broken_zip_is_an_error_with_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(b"PK\x03\x04 this is no zip")
    producer = Producer()
    producer.start()
    try:
        producer.begin(path, SPECS, USERS, 1000)
        with pytest.raises(ProducerError, match="BadZipFile"):
            producer.next()
    finally:
        producer.close()


def test_killed_child_is_an_error(tmp_path: Path) -> None:
    path = _zip(tmp_path / "p.zip", 50_000)
    producer = Producer()
    producer.start()
    try:
        producer.begin(path, SPECS, USERS, 100)
        assert producer.next() is not None
        pid = producer._proc.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ProducerError, match="ended early"):
            _all(producer)
    finally:
        producer.close()


def test_parent_stopping_early_ends_the_child(tmp_path: Path) -> None:
    path = _zip(tmp_path / "p.zip", 50_000)
    producer = Producer()
    producer.start()
    producer.begin(path, SPECS, USERS, 100)
    assert producer.next() is not None
    started = time.monotonic()
    producer.close()
    assert not producer._proc.is_alive()
    assert time.monotonic() - started < 5


def test_closed_before_any_page(tmp_path: Path) -> None:
    producer = Producer()
    producer.start()
    producer.close()
    assert not producer._proc.is_alive() and producer._proc.exitcode == 0
