"""Watermarks of the jobs that read ``reports_v1`` (alerts, exports), one row per consumer.

A consumer reads the reports past its watermark a batch at a time and moves the watermark in the same
transaction as its own output, so a crash redoes a batch rather than skipping or repeating it.
``ingest_seq`` is safe to follow: the loader hands it out under its lock (see :mod:`sitrep.store`).
"""

from __future__ import annotations

import psycopg

__all__ = ["advance", "batch_end", "position"]


def position(conn: psycopg.Connection, consumer: str, *, start: int = 0, lock: bool = False) -> int:
    """The consumer's watermark, recorded at ``start`` on first use; ``lock`` holds its row to the commit."""
    conn.execute("INSERT INTO downstream_watermarks (consumer, ingest_seq) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                 (consumer, start))
    row = conn.execute("SELECT ingest_seq FROM downstream_watermarks WHERE consumer = %s"
                       + (" FOR UPDATE" if lock else ""), (consumer,)).fetchone()
    return start if row is None else int(row[0])


def batch_end(conn: psycopg.Connection, after: int, rows: int) -> int | None:
    """The ingest_seq that ends the next batch of at most ``rows`` reports past ``after``; None when caught up."""
    row = conn.execute("SELECT max(ingest_seq) FROM (SELECT ingest_seq FROM reports_v1 WHERE ingest_seq > %s"
                       " ORDER BY ingest_seq LIMIT %s) batch", (after, rows)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def advance(conn: psycopg.Connection, consumer: str, seq: int) -> None:
    """Move the consumer's watermark to ``seq``: commit it with what the consumer made of the batch."""
    conn.execute("UPDATE downstream_watermarks SET ingest_seq = %s, updated_at = now() WHERE consumer = %s",
                 (seq, consumer))
