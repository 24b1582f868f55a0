"""Dedup: are syndicated copies grouped and same-topic articles kept apart, and what does it cost at scale?

Quality: the generator (bench/_newsgen.py) writes wire articles, 0-4 syndicated copies of each (other
chrome, edited headline, a paragraph dropped or added, cut to the lede, copy-editing, spacing and
punctuation noise) and distinct articles on the same topic (same town, same day, stock phrases, at
times a shared background paragraph). They are loaded through the real merge (store.load_staged:
exact layer, LSH probe in Postgres, verification, stories) in batches, in a shuffled order. A pair of
reports is "predicted duplicate" when both entries end in the same story; truth is "same event". The
same reports are loaded once more without the time window on candidates (DedupSettings.window_days):
the two rows say what the window costs in recall and saves in candidates verified.

Cost: the same load, into databases whose story_bands already hold the bands of 10k, 100k (and with
--full 1M) reports, pre-filled server-side (INSERT ... SELECT generate_series, primary key built after)
with random keys, as many per report as a real one. Per-report cost is the near-duplicate layer's time
(LoadResult.dedup_seconds) and the whole merge's, per loaded report, the databases taking turns batch
by batch so that the machine's other work weighs on every size alike; peak memory is Python's
(tracemalloc) during the merges, and the size of the LSH index on disk. The baseline is the 10k row.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from rich.table import Table

from bench import step
from bench._newsgen import Article, generate
from sitrep import db, dedup, store
from sitrep.normalize import clean_text, content_hash
from sitrep.records import Report
from sitrep.settings import DedupSettings

TITLE = "Dedup: duplicate-pair precision/recall (generated syndication) and per-report cost vs reports indexed"
ORDER = 40

_EVENTS = 400
_BATCH = 250
_KEYS = dedup.MAX_KEYS
_FILLER_IDS = 10**12  # report ids of the pre-filled bands: never a real report


@dataclass
class _Run:
    indexed: int
    reports: int
    dedup_seconds: float
    load_seconds: float
    candidates: int
    peak_bytes: int
    index_bytes: int
    story_of: dict[str, int]


def _prefill(conn: psycopg.Connection, reports: int) -> None:
    """story_bands as if ``reports`` reports were indexed: random keys, the primary key built after."""
    if not reports:
        return
    with conn.transaction():
        conn.execute("ALTER TABLE story_bands DROP CONSTRAINT story_bands_pkey")
        conn.execute("DROP INDEX story_bands_report_idx")
        conn.execute(
            "INSERT INTO story_bands (band, hash, report_id)"
            " SELECT b, hashtextextended(r::text, b), %s + r FROM generate_series(1, %s) r, generate_series(0, %s) b",
            (_FILLER_IDS, reports, _KEYS - 1),
        )
        conn.execute("ALTER TABLE story_bands ADD PRIMARY KEY (band, hash, report_id)")
        conn.execute("CREATE INDEX story_bands_report_idx ON story_bands (report_id)")
    conn.execute("VACUUM ANALYZE story_bands")


def _report(article: Article, entry_id: int, source_id: int, keys: list[int]) -> Report:
    text = clean_text(article.text)
    url = f"https://{article.key}.example/{article.town.lower()}/{article.key}.html"
    return Report(entry_id=entry_id, source_id=source_id, page_id=None, url=url, canonical_url=url,
                  title=article.title, authors=[], published_at=article.published, published_at_source="article",
                  fetched_at=datetime.now(UTC), language="en", text=text, summary=None, word_count=len(text.split()),
                  content_sha256=content_hash(text), extraction_method="bench", minhash=keys)


class _Target:
    """One database with ``indexed`` reports' worth of bands, loading the generated reports."""

    def __init__(self, url: str, indexed: int, articles: list[Article]) -> None:
        self.conn = db.connect(url, statement_timeout_ms=0)
        self.conn.autocommit = True
        _prefill(self.conn, indexed)
        self.conn.autocommit = False
        row = self.conn.execute(
            "INSERT INTO sources (name, feed_url, host) VALUES ('bench', 'http://127.0.0.1/bench.xml', '127.0.0.1')"
            " RETURNING source_id"
        ).fetchone()
        assert row is not None
        self.source_id = int(row[0])
        entry_ids = [r[0] for r in self.conn.execute(
            "INSERT INTO entries (source_id, entry_key) SELECT %s, k FROM unnest(%s::text[]) WITH ORDINALITY AS u(k, n)"
            " ORDER BY n RETURNING entry_id",
            (self.source_id, [a.key for a in articles]),
        ).fetchall()]
        self.conn.commit()
        self.entry_of = dict(zip((a.key for a in articles), entry_ids, strict=True))
        self.run = _Run(indexed, 0, 0.0, 0.0, 0, 0, 0, {})

    def load(self, batch: list[Article], keys: dict[str, list[int]], rules: DedupSettings) -> None:
        with self.conn.transaction():
            store.stage_reports(self.conn, [_report(a, self.entry_of[a.key], self.source_id, keys[a.key]) for a in batch])
        tracemalloc.start()
        began = time.perf_counter()
        result = store.load_staged(self.conn, [self.source_id], rules=rules)
        self.run.load_seconds += time.perf_counter() - began
        self.run.peak_bytes = max(self.run.peak_bytes, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        self.run.reports += len(batch)
        self.run.dedup_seconds += result.dedup_seconds
        self.run.candidates += result.candidates

    def finish(self) -> _Run:
        rows = self.conn.execute(
            "SELECT e.entry_key, r.story_id FROM entries e JOIN reports r USING (report_id) WHERE e.source_id = %s",
            (self.source_id,),
        ).fetchall()
        self.run.story_of = {k: int(s) for k, s in rows}
        size = self.conn.execute("SELECT pg_total_relation_size('story_bands')").fetchone()
        self.run.index_bytes = int(size[0]) if size else 0
        self.conn.close()
        return self.run


def _pairs(groups: dict[object, int]) -> int:
    return sum(n * (n - 1) // 2 for n in groups.values())


def _quality(articles: list[Article], story_of: dict[str, int]) -> tuple[float, float, float, int, int]:
    both = Counter((a.event, story_of[a.key]) for a in articles)
    truth = Counter(a.event for a in articles)
    predicted = Counter(story_of[a.key] for a in articles)
    tp, t, p = _pairs(both), _pairs(truth), _pairs(predicted)  # type: ignore[arg-type]
    precision, recall = (tp / p if p else 1.0), (tp / t if t else 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, t, p


def run(args: argparse.Namespace) -> list[Table]:
    rules = DedupSettings()
    step("generating the reports and their LSH keys")
    articles = list(generate(_EVENTS))
    began = time.process_time()
    keys = {a.key: dedup.band_keys(clean_text(a.text)) for a in articles}
    keys_ms = (time.process_time() - began) * 1000 / len(articles)
    sizes = [10_000, 100_000] + ([1_000_000] if getattr(args, "full", False) else [])
    with tempfile.TemporaryDirectory(prefix="sitrep-bench-dedup-") as tmp:
        server = db.EmbeddedPostgres(Path(tmp))
        template = server.start("bench_template")
        with db.connect(template) as conn:
            db.migrate(conn)
        try:
            targets = []
            for size in sizes:
                db._create_database(server.url("postgres"), f"bench_{size}", template="bench_template")
                targets.append(_Target(server.url(f"bench_{size}"), size, articles))
            # The same reports without the time window on candidates: what the window costs in recall.
            db._create_database(server.url("postgres"), "bench_no_window", template="bench_template")
            unbounded = _Target(server.url("bench_no_window"), 0, articles)
            # Batch by batch, each database in turn: a change in the machine's load hits every size alike.
            for start in range(0, len(articles), _BATCH):
                step(f"loading batch {start // _BATCH + 1} of {-(-len(articles) // _BATCH)} into each index")
                for target in targets:
                    target.load(articles[start : start + _BATCH], keys, rules)
                unbounded.load(articles[start : start + _BATCH], keys, replace(rules, window_days=0))
            runs = [target.finish() for target in targets]
            no_window = unbounded.finish()
        finally:
            server.stop()

    quality = Table(title=f"{len(articles)} generated reports ({_EVENTS} wire events + copies + same-topic articles,"
                          f" published over 30 days), jaccard >= {rules.jaccard}, containment >= {rules.containment}")
    for col in ("candidates verified within", "duplicate pairs (truth)", "predicted", "precision", "recall", "F1",
                "candidates/report", "stories", "events"):
        quality.add_column(col, justify="right")
    for window, run_ in ((f"{rules.window_days:g} days (default)", runs[0]), ("no window", no_window)):
        precision, recall, f1, truth_pairs, predicted_pairs = _quality(articles, run_.story_of)
        quality.add_row(window, str(truth_pairs), str(predicted_pairs), f"{precision:.4f}", f"{recall:.4f}",
                        f"{f1:.4f}", f"{run_.candidates / run_.reports:.2f}", str(len(set(run_.story_of.values()))),
                        str(len({a.event for a in articles})))

    # Per kind of edit: the share of copies that ended in their original's story; and the share of the
    # same-topic articles whose story holds no other event.
    story_of = runs[0].story_of
    original = {a.event: a.key for a in articles if not a.edits}
    events_in: dict[int, set[int]] = defaultdict(set)
    for a in articles:
        events_in[story_of[a.key]].add(a.event)
    kinds: dict[str, list[bool]] = defaultdict(list)
    for a in articles:
        if a.edits == ("same-topic",):
            kinds["same-topic distinct (kept apart)"].append(events_in[story_of[a.key]] == {a.event})
        for edit in a.edits if a.edits != ("same-topic",) else ():
            kinds[edit].append(story_of[a.key] == story_of[original[a.event]])
    by_edit = Table(title="Copies grouped with their original, by edit (a copy has 1-3 edits)")
    for col in ("edit", "reports", "right"):
        by_edit.add_column(col, justify="left" if col == "edit" else "right")
    for edit, hits in sorted(kinds.items()):
        by_edit.add_row(edit, str(len(hits)), f"{sum(hits) / len(hits):.1%}")

    base = runs[0]
    cost = Table(title=f"Per-report cost with N reports already indexed ({_KEYS} LSH keys per report; baseline: "
                       f"{base.indexed:,}); MinHash keys in the worker: {keys_ms:.2f} ms/report (CPU)")
    for col in ("indexed", "band rows", "LSH index on disk", "dedup ms/report", "x 10k", "merge ms/report", "x 10k",
                "candidates/report", "peak Python memory"):
        cost.add_column(col, justify="right")
    for r in runs:
        cost.add_row(f"{r.indexed:,}", f"{r.indexed * _KEYS:,}", f"{r.index_bytes / 2**20:,.0f} MB",
                     f"{r.dedup_seconds * 1000 / r.reports:.3f}", f"{r.dedup_seconds / base.dedup_seconds:.2f}",
                     f"{r.load_seconds * 1000 / r.reports:.3f}", f"{r.load_seconds / base.load_seconds:.2f}",
                     f"{r.candidates / r.reports:.2f}", f"{r.peak_bytes / 2**20:.1f} MB")
    return [quality, by_edit, cost]
