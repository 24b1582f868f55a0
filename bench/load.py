"""The loader against raw COPY: reports/s into Postgres, same rows, same server, same run.

Baseline: ``COPY`` of the rows into a bare table with the report's columns (no index, no constraint,
no merge): the fastest way the bytes can get in. Loader: what the pipeline does with the same rows,
``store.stage_reports`` (COPY into staging) then ``store.load_staged`` (exact and near-duplicate
dedup, stories, URL aliases, one transaction per batch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

TITLE = "Load: reports/s through the loader vs raw COPY"
ORDER = 60

def _reports(n: int, source_id: int, first_entry: int, seed: int = 5) -> list:
    """``n`` reports as the collect step stages them: news-like texts from bench/_newsgen.py (wire articles,
    their syndicated copies, same-topic articles), with the LSH keys the extraction workers compute."""
    from bench._newsgen import generate
    from sitrep import dedup
    from sitrep.normalize import clean_text, content_hash
    from sitrep.records import Report

    now = datetime.now(UTC)
    out = []
    for i, article in enumerate(generate(n, seed=seed)):
        if i == n:
            break
        text = clean_text(article.text)
        url = f"https://bench.example/{article.town.lower()}/{article.key}.html"
        out.append(Report(
            entry_id=first_entry + i, source_id=source_id, page_id=None, url=url, canonical_url=url,
            title=article.title, authors=["Desk"], published_at=article.published, published_at_source="article",
            fetched_at=now, language="en", text=text, summary=text[:300], word_count=len(text.split()),
            content_sha256=content_hash(text), extraction_method="bench", minhash=dedup.band_keys(text),
        ))
    return out


def _prepare(conn, n: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    source_id = conn.execute(
        "INSERT INTO sources (name, feed_url, host) VALUES ('bench', 'https://bench.example/rss', 'bench.example')"
        " RETURNING source_id"
    ).fetchone()[0]
    first = conn.execute("SELECT coalesce(max(entry_id), 0) + 1 FROM entries").fetchone()[0]
    with conn.cursor().copy("COPY entries (entry_id, source_id, entry_key, link) FROM STDIN") as copy:
        for i in range(n):
            copy.write_row((first + i, source_id, f"k{first + i}", f"https://bench.example/{i}"))
    conn.execute("SELECT setval('entries_entry_id_seq', %s)", (first + n,))
    conn.commit()
    return source_id, first


def _raw_copy(conn, reports: list) -> float:  # type: ignore[no-untyped-def]
    from dataclasses import astuple, fields

    from psycopg.types.json import Jsonb

    from sitrep.records import Report

    cols = [f.name for f in fields(Report)]
    conn.execute("DROP TABLE IF EXISTS bare_reports")
    conn.execute("CREATE TABLE bare_reports (LIKE staged_reports INCLUDING DEFAULTS)")
    conn.commit()
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY bare_reports ({', '.join(cols)}) FROM STDIN") as copy:
            for report in reports:
                copy.write_row([Jsonb(v) if isinstance(v, (dict, list)) and c in {"places", "actors", "evidence"} else v
                                for c, v in zip(cols, astuple(report), strict=True)])
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> Table:
    from sitrep import db, store

    sizes = [2000, 10000] + ([50000] if args.full else [])
    table = Table(title="loader vs raw COPY (5 KB texts)")
    for col in ("rows", "raw COPY rows/s", "loader rows/s", "ratio", "stage s", "merge s"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="sitrep-bench-load-") as tmp:
        server = db.EmbeddedPostgres(Path(tmp) / "pg")
        try:
            server.start("postgres")
            for size in sizes:
                name = f"load_{size}"
                db._create_database(server.url("postgres"), name)
                with db.connect(server.url(name)) as conn:
                    db.migrate(conn)
                    source_id, first = _prepare(conn, size)
                    reports = _reports(size, source_id, first)
                    raw = _raw_copy(conn, reports)
                    started = time.perf_counter()
                    with conn.transaction():
                        store.stage_reports(conn, reports)
                    staged = time.perf_counter() - started
                    store.load_staged(conn, [source_id])
                    total = time.perf_counter() - started
                    closed = conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')"
                                          ).fetchone()[0]
                    assert closed == size, f"loaded {closed} of {size}"
                table.add_row(str(size), f"{size / raw:.0f}", f"{size / total:.0f}", f"{raw / total:.2f}",
                              f"{staged:.1f}", f"{total - staged:.1f}")
        finally:
            server.stop()
    return table
