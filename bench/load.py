"""The loader against raw COPY: reports/s into Postgres, same rows, same server, same run.

Rows: news-like texts from bench/_newsgen.py (wire articles, their syndicated copies, same-topic
articles: about 2 KB each), with the LSH keys the extraction workers compute (outside the timing, as in
the pipeline), so that exact duplicates, near-duplicate candidates and stories are like the real thing.

Baseline: ``COPY`` (psycopg's default text format) of the rows into a bare table with staged_reports'
columns and storage (no index, no constraint, no merge). Loader: what the pipeline does with the same rows,
``store.stage_reports`` (COPY into staging) then ``store.load_staged`` (exact and near-duplicate
dedup, stories, URL aliases, LSH index, one transaction per batch). Also shown: the same baseline in
binary COPY format (what stage_reports uses), the strictest comparison. Each size runs three times in a
fresh database; each figure is its best round (the machine's other jobs only ever add time).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.table import Table

from bench import step

TITLE = "Load: reports/s through the loader vs raw COPY"
ORDER = 60

_WORDS = ("the forces said shelling town region overnight drone strike killed wounded officials military "
          "attack regional governor reported damage infrastructure civilians front line artillery positions "
          "village residents evacuated missile air defence units brigade offensive ceasefire talks aid").split()


def _reports(n: int, source_id: int, first_entry: int, seed: int = 5) -> list:
    """``n`` distinct reports of 800 random words (~5 KB), no LSH keys: bench/downstream.py's rows."""
    from sitrep.normalize import content_hash
    from sitrep.records import Report

    rnd = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        words = [rnd.choice(_WORDS) for _ in range(800)] + [f"u{seed}x{i}"]  # ~5 KB, unique
        text = " ".join(words)
        out.append(Report(
            entry_id=first_entry + i, source_id=source_id, page_id=None, url=f"https://bench.example/{seed}/{i}",
            canonical_url=f"https://bench.example/{seed}/{i}", title=f"Report {i}", authors=["Desk"],
            published_at=now, published_at_source="article", fetched_at=now, language="en", text=text,
            summary=text[:300], word_count=len(words), content_sha256=content_hash(text), extraction_method="bench",
        ))
    return out


def _news_reports(n: int, source_id: int, first_entry: int, seed: int = 5) -> list:
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
    _prepare_entries(conn, source_id, first, n)
    return source_id, first


def _prepare_entries(conn, source_id: int, first: int, n: int) -> None:  # type: ignore[no-untyped-def]
    with conn.cursor().copy("COPY entries (entry_id, source_id, entry_key, link) FROM STDIN") as copy:
        for i in range(n):
            copy.write_row((first + i, source_id, f"k{first + i}", f"https://bench.example/{i}"))
    conn.execute("SELECT setval('entries_entry_id_seq', %s)", (first + n,))
    conn.commit()


def _raw_copy(conn, reports: list, *, binary: bool = False) -> float:  # type: ignore[no-untyped-def]
    """COPY the rows into a fresh bare table with staged_reports' columns (no index, no constraint)."""
    from dataclasses import fields

    from psycopg.types.json import Jsonb

    from sitrep.records import Report

    cols = [f.name for f in fields(Report)]
    conn.execute("DROP TABLE IF EXISTS bare_reports")
    # The same storage as staged_reports (its texts EXTERNAL: stored uncompressed, migration 0008), so
    # that the baseline does no pglz work the loader's own COPY does not do.
    conn.execute("CREATE TABLE bare_reports (LIKE staged_reports INCLUDING DEFAULTS INCLUDING STORAGE"
                 " INCLUDING COMPRESSION)")
    types = [conn.execute("SELECT atttypid FROM pg_attribute WHERE attrelid = 'bare_reports'::regclass AND attname = %s",
                          (c,)).fetchone()[0] for c in cols]
    conn.commit()
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY bare_reports ({', '.join(cols)}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")) as copy:
            if binary:
                copy.set_types(types)
            for report in reports:
                copy.write_row([Jsonb(getattr(report, c)) if c in {"places", "actors", "evidence"} else getattr(report, c)
                                for c in cols])
    return time.perf_counter() - started


def _round(server, name: str, reports_for) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    """One fresh database: raw COPY (text, then binary) of the rows, then the loader on the same rows.
    Returns (raw text COPY s, raw binary COPY s, stage s, stage + merge s)."""
    from sitrep import db, store

    db._create_database(server.url("postgres"), name)
    with db.connect(server.url(name), statement_timeout_ms=0) as conn:
        db.migrate(conn)
        source_id, first = _prepare(conn, 0)
        reports = reports_for(source_id, first)
        _prepare_entries(conn, source_id, first, len(reports))
        raw = _raw_copy(conn, reports)
        raw_binary = _raw_copy(conn, reports, binary=True)
        started = time.perf_counter()
        with conn.transaction():
            store.stage_reports(conn, reports)
        staged = time.perf_counter() - started
        store.load_staged(conn, [source_id])
        total = time.perf_counter() - started
        closed = conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')").fetchone()[0]
        assert closed == len(reports), f"loaded {closed} of {len(reports)}"
    return raw, raw_binary, staged, total


def run(args: argparse.Namespace) -> list[Table]:
    from dataclasses import replace

    from sitrep import db

    sizes = [2000, 10000] + ([50000] if args.full else [])
    rounds = 3
    table = Table(title="loader vs raw COPY (news-like texts, best of 3 rounds, a fresh database each)")
    for col in ("rows", "text KB", "raw COPY rows/s", "loader rows/s", "ratio", "stage s", "merge s",
                "raw binary COPY rows/s", "ratio to binary"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory(prefix="sitrep-bench-load-") as tmp:
        server = db.EmbeddedPostgres(Path(tmp) / "pg")
        try:
            server.start("postgres")
            for size in sizes:
                step(f"{size} rows: generating the reports")
                generated = _news_reports(size, 0, 0)  # once per size (the LSH keys cost more than a load)

                def reports_for(source_id: int, first: int, generated: list = generated) -> list:
                    return [replace(r, source_id=source_id, entry_id=first + i) for i, r in enumerate(generated)]

                runs = []
                for i in range(rounds):
                    step(f"{size} rows: raw COPY and the loader, round {i + 1} of {rounds}")
                    runs.append(_round(server, f"load_{size}_{i}", reports_for))
                raw = min(r[0] for r in runs)
                raw_binary = min(r[1] for r in runs)
                _, _, staged, total = min(runs, key=lambda r: r[3])  # the loader's best round
                kb = sum(len(r.text.encode()) for r in generated) / len(generated) / 1024
                table.add_row(str(size), f"{kb:.1f}", f"{size / raw:.0f}", f"{size / total:.0f}", f"{raw / total:.2f}",
                              f"{staged:.1f}", f"{total - staged:.1f}", f"{size / raw_binary:.0f}",
                              f"{raw_binary / total:.2f}")
            growing = _growing(server, *((10000, 10) if args.full else (5000, 6)))
        finally:
            server.stop()
    return [table, growing]


def _revised(report, entry_id: int):  # type: ignore[no-untyped-def]
    """The report's page fetched again with an update appended (a new entry, the same URL)."""
    from dataclasses import replace

    from sitrep import dedup
    from sitrep.normalize import content_hash

    text = report.text + f" Update: officials revised the figures later on (entry {entry_id})."
    return replace(report, entry_id=entry_id, text=text, word_count=len(text.split()),
                   content_sha256=content_hash(text), minhash=dedup.band_keys(text))


def _growing(server, batch: int, batches: int, revised_share: float = 0.05,  # type: ignore[no-untyped-def]
             name: str = "load_growing") -> Table:
    """The loader as the table grows: ``batches`` batches into one database, each after the first with
    revisions (pages of the batch before fetched again with a changed text). Per-report cost must stay
    flat: the last batch's rows/s against the first's.

    Each batch is the next month's news (the generator spreads a batch over 30 days), as a database
    grows in time: near-duplicate candidates come from reports published within the window
    (DedupSettings.window_days) of the new one, not from the whole index."""
    from dataclasses import replace

    from sitrep import db, store

    table = Table(title=f"loader as the table grows ({batches} batches of {batch} news-like reports into one database, "
                        f"each the next month's, {revised_share:.0%} of the batch before revised in each)")
    for col in ("batch", "reports before", "rows", "revised", "LSH keys before", "pairs verified", "rows/s", "stage s",
                "merge s", "vs first batch"):
        table.add_column(col, justify="right")
    db._create_database(server.url("postgres"), name)
    with db.connect(server.url(name), statement_timeout_ms=0) as conn:
        db.migrate(conn)
        source_id, _ = _prepare(conn, 0)
        previous: list = []
        first_rate = 0.0
        for b in range(batches):
            step(f"the growing table: batch {b + 1} of {batches}")
            first = conn.execute("SELECT coalesce(max(entry_id), 0) + 1 FROM entries").fetchone()[0]
            # Each batch's pages under their own URLs (the generator's URLs repeat across seeds).
            fresh = [replace(r, source_id=source_id, entry_id=first + i, url=f"https://bench.example/b{b}/{i}.html",
                             canonical_url=f"https://bench.example/b{b}/{i}.html",
                             published_at=r.published_at + timedelta(days=30 * b))
                     for i, r in enumerate(_news_reports(batch, source_id, 0, seed=100 + b))]
            again = [_revised(r, first + len(fresh) + i) for i, r in enumerate(previous[:int(batch * revised_share)])]
            reports = fresh + again
            _prepare_entries(conn, source_id, first, len(reports))
            before, keys = conn.execute("SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM story_bands)").fetchone()
            conn.commit()
            started = time.perf_counter()
            with conn.transaction():
                store.stage_reports(conn, reports)
            staged = time.perf_counter() - started
            result = store.load_staged(conn, [source_id])
            total = time.perf_counter() - started
            rate = len(reports) / total
            first_rate = first_rate or rate
            table.add_row(str(b + 1), str(before), str(len(reports)), str(result.updated), str(keys),
                          str(result.candidates), f"{rate:.0f}",
                          f"{staged:.1f}", f"{total - staged:.1f}", f"{rate / first_rate:.2f}")
            previous = fresh
    return table
