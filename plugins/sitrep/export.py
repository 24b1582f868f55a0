"""The warehouse feed: reports_v1, incrementally, to Parquet files partitioned by ingest date.

Usage::

    with db.connect(url) as conn:
        result = export.run(conn, export.target(settings), batch_rows=20_000)

Layout under the base path (a local folder or any fsspec URL such as ``s3://bucket/sitrep``)::

    ingest_date=2026-11-25/reports-000000000101-000000000245.parquet   rows with ingest_seq in (100, 245]
    _manifests/manifest-000000000101-000000000245.json                 files, rows, seq range, sha256

``ingest_date`` is the UTC date of ``updated_at``: the day this revision of the report entered the
pipeline. A report whose text changes comes again with its new ``revision``, so a warehouse MERGE on
``report_id`` keeping the highest revision (or ``ingest_seq``) has the latest text.

Exactly once, whatever is killed when. Each step covers a range of ingest_seq ``(lo, hi]``:

1. plan: the rows of the range are read and the manifest row is recorded as ``planned`` with the file
   names, which depend only on the range and the partition (commit);
2. write: each file goes to a hidden temporary name, then is renamed into place (atomic on a local
   disk; an object store's PUT is atomic already);
3. commit: in one transaction the manifest becomes ``committed`` and the watermark moves to ``hi``.

A run killed before 3 leaves the ``planned`` manifest; the next run redoes exactly that range, so the
same names are overwritten (and a planned file that the redo no longer needs is removed). ingest_seq
is a safe watermark because the loader hands it out under its lock (see :mod:`sitrep.store`).
Readers should skip names starting with ``.`` or ``_`` (pyarrow's datasets and Spark do); a glob
should name the partitions (``<path>/ingest_date=*/*.parquet``). A backfill goes to a folder of its own.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sitrep import downstream
from sitrep.db import autocommit, wait_for_lock
from sitrep.errors import ConfigError, SitrepError
from sitrep.settings import Settings

__all__ = [
    "COLUMNS", "ExportError", "ExportResult", "ExportStep", "ExportedFile", "committed_files", "export_step", "run", "target",
]

log = logging.getLogger(__name__)

#: Serialises exporters of one base path (second key: hashtext of the path).
EXPORT_LOCK = 0x5175_0006
#: How long a second exporter of one target waits for the first, whatever the statement timeout.
EXPORT_LOCK_WAIT = "1h"

#: The columns of reports_v1 that are exported, in file order.
COLUMNS = [
    "report_id", "story_id", "duplicate_of", "source", "feed_url", "url", "canonical_url", "title", "authors",
    "published_at", "published_at_source", "fetched_at", "ingested_at", "ingest_seq", "language", "text",
    "summary", "word_count", "content_sha256", "extraction_method", "relevance", "event_types", "places",
    "actors", "revision", "updated_at",
]
#: Derived at export time: relevance >= SITREP_RELEVANCE_THRESHOLD (null while a report is not scored).
DERIVED = ["conflict"]
_JSON_COLUMNS = {"places", "actors"}


class ExportError(SitrepError):
    """An export step could not be completed; the next run resumes it."""


def _schema() -> Any:
    """The Parquet schema, fixed so that an all-null column keeps its type from file to file."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    text = pa.string()
    types = {
        "report_id": pa.int64(), "story_id": pa.int64(), "duplicate_of": pa.int64(), "authors": pa.list_(text),
        "published_at": ts, "fetched_at": ts, "ingested_at": ts, "updated_at": ts, "ingest_seq": pa.int64(),
        "word_count": pa.int32(), "relevance": pa.float32(), "event_types": pa.list_(text), "revision": pa.int32(),
    }
    return pa.schema([pa.field(name, types.get(name, text)) for name in COLUMNS] + [pa.field(name, pa.bool_()) for name in DERIVED])


@dataclass(frozen=True)
class ExportedFile:
    path: str  # relative to the base path
    rows: int
    sha256: str
    bytes: int
    min_seq: int
    max_seq: int


@dataclass(frozen=True)
class ExportStep:
    manifest_id: int
    min_seq: int  # exclusive
    max_seq: int  # inclusive
    files: list[ExportedFile]
    resumed: bool = False

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass
class ExportResult:
    target: str
    watermark: int
    steps: list[ExportStep] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.steps)

    @property
    def files(self) -> list[ExportedFile]:
        return [f for s in self.steps for f in s.files]


def target(settings: Settings) -> str:
    """The base path in use: SITREP_EXPORT_PATH, else ``<SITREP_HOME>/export``."""
    return settings.downstream.export_path or str(settings.home / "export")


def canonical_target(base: str) -> str:
    """One spelling per export folder: its watermark, lock and manifests are keyed by it, and
    "/data/export" (Airflow's) beside "/data/export/" (a shell's) exported everything twice."""
    if "://" in base:
        scheme, _, rest = base.partition("://")
        return f"{scheme}://{rest.rstrip('/') or rest}"
    return os.path.realpath(os.path.expanduser(base))


def _adopt_legacy_spelling(conn: psycopg.Connection, spelled: str, base: str) -> None:
    """Export state recorded under another spelling of this folder (before canonical_target) is its own."""
    if spelled == base:
        return
    mine = conn.execute("SELECT 1 FROM downstream_watermarks WHERE consumer = %s", (f"export:{base}",)).fetchone()
    if mine is None and conn.execute("UPDATE downstream_watermarks SET consumer = %s WHERE consumer = %s",
                                     (f"export:{base}", f"export:{spelled}")).rowcount:
        conn.execute("UPDATE export_manifests SET target = %s WHERE target = %s", (base, spelled))
        log.info("export %s: its state recorded as %s adopted", base, spelled)


def _filesystem(base: str):  # type: ignore[no-untyped-def]
    import fsspec

    try:
        return fsspec.core.url_to_fs(base)
    except (ImportError, ValueError) as exc:
        raise ExportError(
            f"can't open the export path {base!r}: {exc}; install the fsspec driver for its scheme "
            "(e.g. s3fs for s3://) or set SITREP_EXPORT_PATH to a local folder"
        ) from exc


def _file_name(partition: str, lo: int, hi: int) -> str:
    return f"ingest_date={partition}/reports-{lo + 1:012d}-{hi:012d}.parquet"


def _manifest_name(lo: int, hi: int) -> str:
    return f"_manifests/manifest-{lo + 1:012d}-{hi:012d}.json"


def _put_atomically(fs, path: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """Write to a hidden temporary name in the same folder, then rename over the final name.

    On a local disk the file and then its folder are flushed to disk (fsync) before this returns: the
    step's manifest and watermark commit next, and a file the watermark has passed is never written
    again, so it must survive a crash of the machine, not only of the process. (An object store's
    upload is durable when it returns.)
    """
    from fsspec.implementations.local import LocalFileSystem

    folder, _, name = path.rpartition("/")
    fs.makedirs(folder, exist_ok=True)
    temporary = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    local = isinstance(fs, LocalFileSystem)
    try:
        if local:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            directory = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        else:
            with fs.open(temporary, "wb") as handle:
                handle.write(data)
            fs.mv(temporary, path)
    except OSError as exc:
        raise ExportError(f"can't write {path}: {exc}; check the export path and its free space") from exc
    finally:
        if fs.exists(temporary):
            fs.rm(temporary)


def _parquet(rows: Sequence[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(list(rows), schema=_schema())
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


_ROWS = (
    "SELECT {cols}, relevance >= %s::real AS conflict, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS ingest_date"
    " FROM reports_v1"
    " WHERE ingest_seq > %s AND ingest_seq <= %s ORDER BY ingest_seq"
)


def _read_rows(conn: psycopg.Connection, lo: int, hi: int, threshold: float) -> dict[str, list[dict[str, Any]]]:
    """The rows of the range, by partition, JSON columns as JSON text."""
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(_ROWS.format(cols=", ".join(COLUMNS)), (threshold, lo, hi))
        for row in cur:
            day = row.pop("ingest_date")
            for name in _JSON_COLUMNS:
                row[name] = json.dumps(row[name], ensure_ascii=False, sort_keys=True)
            by_day[day].append(row)
    return by_day


def _next_range(conn: psycopg.Connection, consumer: str, kind: str, base: str, batch_rows: int,
                start_seq: int) -> tuple[int, int, dict[str, Any] | None] | None:
    """(lo, hi, planned manifest or None): a planned step left by a crash first, else the next rows."""
    with conn.transaction():
        lo = downstream.position(conn, consumer, start=start_seq)
        planned = conn.execute(
            "SELECT manifest_id, min_seq, max_seq, files FROM export_manifests"
            " WHERE target = %s AND kind = %s AND status = 'planned'",
            (base, kind),
        ).fetchone()
        if planned is not None:
            manifest_id, lo, hi, files = planned
            return int(lo), int(hi), {"manifest_id": manifest_id, "files": files}
        hi = downstream.batch_end(conn, lo, batch_rows)
    return None if hi is None else (lo, hi, None)


def _step(conn: psycopg.Connection, fs, root: str, base: str, consumer: str, kind: str, lo: int, hi: int,  # type: ignore[no-untyped-def]
          planned: dict[str, Any] | None, on_files_written: Callable[[ExportStep], None] | None,
          threshold: float) -> ExportStep:
    by_day = _read_rows(conn, lo, hi, threshold)
    names = {day: _file_name(day, lo, hi) for day in sorted(by_day)}
    with conn.transaction():
        if planned is None:
            manifest_id = conn.execute(
                "INSERT INTO export_manifests (target, kind, min_seq, max_seq, files) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (target, kind, min_seq, max_seq) DO UPDATE SET status = 'planned',"
                " files = EXCLUDED.files, created_at = now(), committed_at = NULL RETURNING manifest_id",
                (base, kind, lo, hi, Jsonb([{"path": n} for n in names.values()])),
            ).fetchone()[0]  # type: ignore[index]
        else:
            manifest_id = planned["manifest_id"]
            # A retry: a planned file the redo no longer needs (its rows were updated since) must go.
            for item in planned["files"]:
                if item["path"] not in names.values() and fs.exists(f"{root}/{item['path']}"):
                    fs.rm(f"{root}/{item['path']}")
                    log.info("export %s: removed %s left by an interrupted run", base, item["path"])
            conn.execute("UPDATE export_manifests SET files = %s WHERE manifest_id = %s",
                         (Jsonb([{"path": n} for n in names.values()]), manifest_id))
    files = []
    for day, name in names.items():
        rows = by_day[day]
        data = _parquet(rows)
        _put_atomically(fs, f"{root}/{name}", data)
        seqs = [int(r["ingest_seq"]) for r in rows]
        files.append(ExportedFile(path=name, rows=len(rows), sha256=hashlib.sha256(data).hexdigest(), bytes=len(data),
                                  min_seq=min(seqs), max_seq=max(seqs)))
    step = ExportStep(manifest_id=int(manifest_id), min_seq=lo, max_seq=hi, files=files, resumed=planned is not None)
    manifest = {"target": base, "kind": kind, "min_seq_exclusive": lo, "max_seq": hi, "rows": step.rows,
                "files": [asdict(f) for f in files]}
    _put_atomically(fs, f"{root}/{_manifest_name(lo, hi)}", json.dumps(manifest, indent=2).encode())
    if on_files_written is not None:
        on_files_written(step)  # fault injection point for tests: files written, nothing committed
    seqs_all = [f.min_seq for f in files] + [f.max_seq for f in files]
    with conn.transaction():
        mark = conn.execute("SELECT ingest_seq FROM downstream_watermarks WHERE consumer = %s FOR UPDATE",
                            (consumer,)).fetchone()
        if mark is None or int(mark[0]) != lo:
            raise ExportError(
                f"export to {base}: the watermark moved to {mark and mark[0]} while this run exported ({lo}, {hi}];"
                " another exporter is writing to the same path: run one at a time"
            )
        conn.execute(
            "UPDATE export_manifests SET status = 'committed', committed_at = now(), rows = %s, first_seq = %s,"
            " last_seq = %s, files = %s WHERE manifest_id = %s",
            (step.rows, min(seqs_all, default=None), max(seqs_all, default=None),
             Jsonb([asdict(f) for f in files]), manifest_id),
        )
        downstream.advance(conn, consumer, hi)
    log.info("export %s: (%d, %d] %d rows in %d file(s)", base, lo, hi, step.rows, len(files))
    return step


def run(conn: psycopg.Connection, base: str, *, batch_rows: int = 20_000, start_seq: int = 0,
        kind: str = "incremental", threshold: float = 0.5,
        on_files_written: Callable[[ExportStep], None] | None = None) -> ExportResult:
    """Export every report past the watermark of ``base``, step by step, until it is caught up.

    ``start_seq`` is where a new destination starts (0: everything); a backfill is simply a
    destination of its own (``kind='backfill'``) that starts at the ``--since`` sequence number.
    ``threshold`` (SITREP_RELEVANCE_THRESHOLD) sets the derived ``conflict`` column.
    """
    spelled, base = base, canonical_target(base)
    fs, root = _filesystem(base)
    root = root.rstrip("/")
    consumer = f"export:{base}"
    result = ExportResult(target=base, watermark=start_seq)
    with autocommit(conn):
        with conn.transaction():  # a second exporter of this target waits for the first (an hour at most)
            wait_for_lock(conn, "SELECT pg_advisory_lock(%s, hashtext(%s))", (EXPORT_LOCK, base), EXPORT_LOCK_WAIT)
        try:
            with conn.transaction():
                _adopt_legacy_spelling(conn, spelled, base)
            if kind == "backfill":
                _check_backfill_start(conn, base, consumer, start_seq)
            while True:
                planned_range = _next_range(conn, consumer, kind, base, batch_rows, start_seq)
                if planned_range is None:
                    break
                lo, hi, planned = planned_range
                result.steps.append(_step(conn, fs, root, base, consumer, kind, lo, hi, planned, on_files_written,
                                          threshold))
            result.watermark = downstream.position(conn, consumer, start=start_seq)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (EXPORT_LOCK, base))
    return result


def _check_backfill_start(conn: psycopg.Connection, base: str, consumer: str, start_seq: int) -> None:
    """A backfill folder holds one --since: another one there would resume the first one's watermark and
    silently export nothing before it."""
    row = conn.execute(
        "SELECT coalesce((SELECT min(min_seq) FROM export_manifests WHERE target = %s AND kind = 'backfill'),"
        " (SELECT ingest_seq FROM downstream_watermarks WHERE consumer = %s))",
        (base, consumer),
    ).fetchone()
    started = None if row is None or row[0] is None else int(row[0])
    if started is not None and started != start_seq:
        raise ConfigError(f"{base} holds a backfill since {started}: give --since {started} to resume it, or a folder of"
                          f" its own (--to) for --since {start_seq}")


def committed_files(conn: psycopg.Connection, base: str) -> list[ExportedFile]:
    """Every file of the committed manifests of ``base``, oldest first (what a reader should see)."""
    rows = conn.execute(
        "SELECT files FROM export_manifests WHERE target = %s AND status = 'committed' ORDER BY min_seq",
        (canonical_target(base),)
    ).fetchall()
    conn.commit()
    return [ExportedFile(**item) for (files,) in rows for item in files]


def export_step(settings: Settings) -> dict[str, int]:
    """The DAG's task: export to SITREP_EXPORT_PATH until caught up; counts only (for XCom)."""
    from sitrep import db

    with db.connect_settings(settings) as conn:
        result = run(conn, target(settings), batch_rows=settings.downstream.export_batch_rows,
                     threshold=settings.relevance_threshold)
    for f in result.files:
        log.info("export %s: wrote %s (%d rows, ingest_seq %d-%d, sha256 %s)", result.target, f.path, f.rows,
                 f.min_seq, f.max_seq, f.sha256)
    return {"rows": result.rows, "files": len(result.files), "steps": len(result.steps), "watermark": result.watermark}
