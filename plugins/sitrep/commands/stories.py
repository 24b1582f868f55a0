"""``sitrep stories``: the largest recent stories, with the sources that carried them.

A story is one article and its syndicated copies (sitrep.store, sitrep.dedup). "Recent" means a
member was loaded within ``--days``; stories are ranked by how many reports they hold, then by how
recently they grew. The title is the representative's (the earliest published member, then the longest).
Read from the contract view reports_v1, like any downstream tool.
"""

from __future__ import annotations

import argparse
from datetime import datetime

import psycopg

from sitrep.commands import number
from sitrep.tables import Table, ago, console

__all__ = ["recent_stories", "register", "stories_table"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "stories",
        help="the largest recent stories (an article and its syndicated copies) with their sources",
        description="Lists story clusters that gained a report within --days, largest first: how many "
                    "reports and sources, which sources, the representative's title and when it was published.",
    )
    p.add_argument("--days", type=number(float, 0.001, 36_500), default=7.0, metavar="N", help="stories with a report loaded in the last N days (default 7)")
    p.add_argument("--limit", type=number(int, 1, 100_000), default=20, metavar="N", help="how many stories to show (default 20)")
    p.add_argument("--min-reports", type=number(int, 1), default=1, metavar="N",
                   help="only stories with at least N reports (default 1; 2 shows only syndicated stories)")
    p.add_argument("--reindex", choices=["missing", "all"],
                   help="first (re)build the near-duplicate index from the reports' text: 'missing' for reports "
                        "loaded before it existed, 'all' after a change of the band layout")
    p.set_defaults(func=cmd_stories)


_STORIES_SQL = """
WITH recent AS (
    SELECT DISTINCT story_id FROM reports_v1
    WHERE story_id IS NOT NULL AND ingested_at >= now() - make_interval(secs => %(seconds)s)
)
SELECT v.story_id,
       count(*) AS reports,
       count(DISTINCT v.source) AS sources,
       string_agg(DISTINCT v.source, ', ' ORDER BY v.source) AS names,
       (array_agg(v.title ORDER BY v.duplicate_of IS NOT NULL, v.report_id))[1] AS title,
       (array_agg(v.url ORDER BY v.duplicate_of IS NOT NULL, v.report_id))[1] AS url,
       min(v.published_at) AS first_published,
       max(v.ingested_at) AS last_loaded
FROM reports_v1 v JOIN recent USING (story_id)
GROUP BY v.story_id
HAVING count(*) >= %(min_reports)s
ORDER BY count(*) DESC, max(v.ingested_at) DESC, v.story_id
LIMIT %(limit)s
"""


def recent_stories(conn: psycopg.Connection, *, days: float, limit: int, min_reports: int = 1) -> list[tuple]:  # type: ignore[type-arg]
    """(story_id, reports, sources, source names, title, url, first published, last loaded), largest first."""
    return conn.execute(
        _STORIES_SQL, {"seconds": days * 86400, "limit": limit, "min_reports": min_reports}
    ).fetchall()


def stories_table(rows: list[tuple], days: float) -> Table:  # type: ignore[type-arg]

    table = Table(title=f"{len(rows)} largest stories with a report loaded in the last {days:g} day(s)")
    for col in ("story", "reports", "sources", "carried by", "title (representative)", "published", "last loaded"):
        table.add_column(col, overflow="fold", justify="right" if col in {"story", "reports", "sources"} else "left")
    for story, reports, sources, names, title, url, published, loaded in rows:
        when = published.strftime("%Y-%m-%d %H:%M") if isinstance(published, datetime) else "-"
        table.add_row(str(story), str(reports), str(sources), names or "", f"{title or '(no title)'}\n{url}", when,
                      ago(loaded))
    return table


def cmd_stories(args: argparse.Namespace) -> int:
    from sitrep import db
    from sitrep.settings import Settings

    with db.connect_settings(Settings.from_env(), start=True) as conn:
        db.migrate(conn)
        if args.reindex:
            from sitrep import store

            with console.status("indexing reports for near-duplicate lookups..."):
                done = store.reindex_bands(conn, rebuild=args.reindex == "all")
            console.print(f"{done} report(s) indexed for near-duplicate lookups.")
        rows = recent_stories(conn, days=args.days, limit=args.limit, min_reports=args.min_reports)
    console.print(stories_table(rows, args.days))
    if not rows:
        console.print("No story yet in that window: load reports with `sitrep ingest` or try a larger --days.")
    return 0
