"""Per-source extraction health: catch the site redesign that silently breaks extraction.

A redesign rarely makes extraction fail outright. More often the main configuration starts finding
too little, the fallback chain (a second trafilatura configuration, the feed's own content) takes over,
and the texts get shorter. So every extraction is logged (``extraction_log``: the method that produced
the text and its word count, or the reason nothing usable came out), and :func:`source_health`
compares each source's most recent extractions with its own earlier ones:

- the share of *degraded* extractions (failed, or produced by a fallback step) jumped, or
- the median word count of the successful ones collapsed.

Windows are counted in extractions, not days, so a feed that posts twice a week and one that posts
every minute are judged alike. ``sitrep stats`` calls :func:`source_health`; ``sitrep
extraction-health`` prints it on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from sitrep.records import PageJob, Rejected, Report

__all__ = ["PRIMARY_METHODS", "SourceHealth", "record", "source_health"]

#: Methods that mean "the configured extraction worked"; anything else is a fallback.
PRIMARY_METHODS = ("trafilatura", "file")
#: Extractions in the recent window, and at most this many before it as the source's history.
RECENT = 20
HISTORY = 200
#: Below these counts there is not enough to judge (a new or quiet source is never flagged).
MIN_RECENT = 10
MIN_HISTORY = 20
#: A jump: the degraded share rises by at least this much and at least doubles.
RATE_JUMP = 0.25
#: A collapse: the recent median word count falls below this fraction of the history's.
WORDS_COLLAPSE = 0.5


@dataclass(frozen=True)
class SourceHealth:
    """One source's recent extractions against its history; ``flag`` says what looks wrong, if anything."""

    source_id: int
    source: str
    recent: int
    recent_degraded: float | None
    recent_failed: float | None
    recent_median_words: float | None
    history: int
    history_degraded: float | None
    history_median_words: float | None
    flag: str | None


def record(conn: psycopg.Connection, jobs: Sequence[PageJob], built: Sequence[Report | Rejected], *,
           reextract: bool = False) -> int:
    """Log one row per extraction outcome (call inside the transaction that stages the reports)."""
    job_of = {job.entry_id: job for job in jobs}
    rows: list[tuple[int, int, int | None, str | None, int, str | None, bool]] = []
    for outcome in built:
        job = job_of.get(outcome.entry_id)
        if job is None:
            continue
        if isinstance(outcome, Report):
            rows.append((job.source_id, job.entry_id, job.page_id, outcome.extraction_method, outcome.word_count, None,
                         reextract))
        else:
            rows.append((job.source_id, job.entry_id, job.page_id, None, 0, outcome.reason or "no reason given",
                         reextract))
    if not rows:
        return 0
    with conn.cursor() as cur, cur.copy(
        "COPY extraction_log (source_id, entry_id, page_id, extraction_method, word_count, failure, reextract)"
        " FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)
    return len(rows)


_HEALTH = """
WITH ranked AS (
    SELECT l.source_id, l.word_count, l.failure IS NOT NULL AS failed,
           (l.failure IS NOT NULL OR l.extraction_method <> ALL(%(primary)s)) AS degraded,
           row_number() OVER (PARTITION BY l.source_id ORDER BY l.extraction_id DESC) AS n
    FROM extraction_log l
    WHERE NOT l.reextract
)
SELECT s.source_id, s.name,
       count(*) FILTER (WHERE n <= %(recent)s),
       avg(degraded::int) FILTER (WHERE n <= %(recent)s),
       avg(failed::int) FILTER (WHERE n <= %(recent)s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY word_count) FILTER (WHERE n <= %(recent)s AND NOT failed),
       count(*) FILTER (WHERE n > %(recent)s),
       avg(degraded::int) FILTER (WHERE n > %(recent)s),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY word_count) FILTER (WHERE n > %(recent)s AND NOT failed)
FROM ranked r JOIN sources s USING (source_id)
WHERE r.n <= %(recent)s + %(history)s
GROUP BY s.source_id, s.name
ORDER BY s.name, s.source_id
"""


def source_health(conn: psycopg.Connection, *, recent: int = RECENT, history: int = HISTORY) -> list[SourceHealth]:
    """Every source with logged extractions: recent window vs history, flagged when it degraded."""
    rows = conn.execute(_HEALTH, {"primary": list(PRIMARY_METHODS), "recent": recent, "history": history}).fetchall()
    out = []
    for sid, name, n_recent, deg, failed, med, n_hist, hist_deg, hist_med in rows:
        values = [None if v is None else float(v) for v in (deg, failed, med, hist_deg, hist_med)]
        deg, failed, med, hist_deg, hist_med = values
        out.append(SourceHealth(int(sid), name, int(n_recent), deg, failed, med, int(n_hist), hist_deg, hist_med,
                                _flag(int(n_recent), deg, med, int(n_hist), hist_deg, hist_med)))
    return out


def _flag(n_recent: int, deg: float | None, med: float | None, n_hist: int, hist_deg: float | None,
          hist_med: float | None) -> str | None:
    if n_recent < MIN_RECENT or n_hist < MIN_HISTORY:
        return None
    problems = []
    if deg is not None and hist_deg is not None and deg >= hist_deg + RATE_JUMP and deg >= 2 * hist_deg:
        problems.append(f"failed or fallback extractions jumped from {hist_deg:.0%} to {deg:.0%}")
    if hist_med and (med is None or med < WORDS_COLLAPSE * hist_med):
        problems.append(f"median words collapsed from {hist_med:.0f} to {med or 0:.0f}")
    if not problems:
        return None
    return "; ".join(problems) + ": check whether the site changed its layout (sitrep reextract after a fix)"
