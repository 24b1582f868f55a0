"""``sitrep reextract [--since ...] [--source ...]`` and ``sitrep extraction-health``.

``reextract`` runs extraction again on the stored raw pages (no fetching), after an upgrade of
trafilatura or a change of the SITREP_EXTRACT_* settings; reports whose text changes become new
revisions. ``extraction-health`` shows, per source, the share of failed or fallback extractions and the
median word count, recent against history, and flags the sources that look broken (a redesign).
"""

from __future__ import annotations

import argparse

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from sitrep.tables import Table, console


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "reextract", help="re-extract stored pages without fetching (after an upgrade or a settings change)",
        description="Re-extract the stored raw pages; reports whose text changes become new revisions.",
    )
    p.add_argument("--since", metavar="WHEN",
                   help="only pages fetched since then: YYYY-MM-DD, an ISO timestamp, or a span such as 24h or 7d")
    p.add_argument("--source", metavar="SOURCE", help="only this source: its id, name, feed URL or host")
    p.set_defaults(func=cmd_reextract)
    p = subparsers.add_parser(
        "extraction-health", help="per source: failed or fallback extractions and word counts, recent vs history",
    )
    p.set_defaults(func=cmd_health)


def cmd_reextract(args: argparse.Namespace) -> int:
    from sitrep import db
    from sitrep.reextract import parse_since, reextract, resolve_source
    from sitrep.settings import Settings

    since = parse_since(args.since)
    settings = Settings.from_env()
    with db.connect_settings(settings, start=True) as conn:
        db.migrate(conn)
        source_id = resolve_source(conn, args.source)
        conn.commit()
        with Progress(TextColumn("re-extracting pages"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("pages", total=None)
            result = reextract(settings, conn, since=since, source_id=source_id,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    table = Table(title="sitrep reextract" + (f" --since {args.since}" if args.since else "")
                  + (f" --source {args.source}" if args.source else ""))
    for column in ("pages", "text changed (new revision)", "unchanged", "recovered (failed before)", "failed"):
        table.add_column(column, justify="right")
    table.add_row(str(result.pages), str(result.changed), str(result.unchanged), str(result.recovered),
                  str(result.failed))
    console.print(table)
    if result.pages == 0:
        console.print("No stored pages matched: widen --since or check --source (`sitrep feeds list`).")
    return 0


def health_table(rows: list) -> Table:  # type: ignore[type-arg]
    """The rows of ``sitrep.extract_health.source_health`` as a table (for this command and `sitrep stats`)."""
    table = Table(title="Extraction health per source (recent extractions vs the source's history)")
    for column in ("source", "recent", "failed/fallback", "failed", "median words", "history", "failed/fallback",
                   "median words", "flag"):
        table.add_column(column, justify="left" if column in {"source", "flag"} else "right", overflow="fold")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    def words(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for row in rows:
        table.add_row(row.source, str(row.recent), pct(row.recent_degraded), pct(row.recent_failed),
                      words(row.recent_median_words), str(row.history), pct(row.history_degraded),
                      words(row.history_median_words), Text(row.flag, style="red") if row.flag else "")
    return table


def cmd_health(args: argparse.Namespace) -> int:
    from sitrep import db
    from sitrep.extract_health import source_health
    from sitrep.settings import Settings

    with db.connect_settings(Settings.from_env(), start=True) as conn:
        db.migrate(conn)
        rows = source_health(conn)
    console.print(health_table(rows))
    if not rows:
        console.print("No extractions logged yet: run an ingestion first (`sitrep ingest` or `make demo`).")
    return 0
