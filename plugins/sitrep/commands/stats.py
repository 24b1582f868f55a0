"""``sitrep stats``: how the last ingestion runs went, and which feeds need a look.

One row per run from the view poll_log_v1 (feeds polled, answered 304 or unchanged, parsed, failed,
refused by the SSRF guard, bytes, new entries, entries skipped, pages fetched after the polls), then the unhealthy feeds: disabled (with
the reason), failing (with the backoff's next poll), and stale: polls that succeed but have yielded
nothing new for longer than the feed's own rhythm, with the last time it did.
"""

from __future__ import annotations

import argparse

from sitrep.commands import number
from sitrep.tables import Table, ago, console, rhythm_text

__all__ = ["register", "runs_table", "unhealthy_table"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "stats",
        help="the last ingestion runs (poll log) and the unhealthy feeds: disabled, failing, stale",
        description="Summarises poll_log per run and lists feeds that are disabled, failing or stale "
                    "(polling fine but yielding nothing new for longer than their usual rhythm).",
    )
    p.add_argument("--runs", type=number(int, 1, 10_000), default=10, metavar="N", help="how many recent runs to show (default 10)")
    p.set_defaults(func=cmd_stats)


#: The last runs are found in poll_log first; only their rows go through poll_log_v1, whose pages_fetched
#: is a subquery per row (over the whole log: 5.6 s at 120k polls, past the statement timeout in a day
#: at docs/scaling.md's size).
_RUNS_SQL = """
WITH recent AS (
    SELECT coalesce(run_id, 'ad hoc ' || to_char(date_trunc('minute', polled_at), 'YYYY-MM-DD HH24:MI')) AS run,
           min(polled_at) AS started
    FROM poll_log GROUP BY 1 ORDER BY 2 DESC LIMIT %s
)
SELECT r.run, r.started, count(*) AS feeds, count(*) FILTER (WHERE not_modified),
       count(*) FILTER (WHERE unchanged), count(*) FILTER (WHERE parsed), count(*) FILTER (WHERE error IS NOT NULL),
       count(*) FILTER (WHERE blocked), coalesce(sum(bytes), 0), coalesce(sum(new_entries), 0),
       coalesce(sum(entries_skipped), 0), coalesce(sum(pages_fetched), 0)
FROM poll_log_v1 v
JOIN recent r ON r.run = coalesce(v.run_id, 'ad hoc ' || to_char(date_trunc('minute', v.polled_at), 'YYYY-MM-DD HH24:MI'))
WHERE v.polled_at >= (SELECT min(started) FROM recent)
GROUP BY r.run, r.started ORDER BY r.started DESC
"""


def runs_table(conn, limit: int) -> Table:  # type: ignore[no-untyped-def]
    rows = conn.execute(_RUNS_SQL, (limit,)).fetchall()
    table = Table(title=f"last {len(rows)} run(s) (poll_log)")
    for col in ("run", "started", "feeds", "304", "unchanged", "parsed", "failed", "blocked", "bytes",
                "new entries", "bad entries", "pages fetched"):
        table.add_column(col, overflow="fold", justify="left" if col in {"run", "started"} else "right")
    for run, started, *numbers in rows:
        table.add_row(run, started.strftime("%Y-%m-%d %H:%M:%S"), *(f"{n:,}" for n in numbers))
    return table


def unhealthy_table(feeds: list) -> Table:  # type: ignore[type-arg]
    table = Table(title=f"{len(feeds)} unhealthy feed(s)")
    for col in ("feed", "state", "HTTP", "failures", "last yielded", "rhythm", "next poll", "problem"):
        table.add_column(col, overflow="fold")
    for f in feeds:
        table.add_row(f"{f.name}\n{f.feed_url}", f.state, str(f.last_status or "-"), str(f.failures),
                      ago(f.last_new_entry_at), rhythm_text(f.rhythm), "-" if not f.enabled else ago(f.next_poll_at),
                      (f.problem or ("no new entry for longer than its rhythm" if f.stale else ""))[:120])
    return table


def cmd_stats(args: argparse.Namespace) -> int:
    from sitrep import db, sources
    from sitrep.settings import Settings

    settings = Settings.from_env()
    with db.connect_settings(settings, start=True) as conn:
        db.migrate(conn)
        runs = runs_table(conn, args.runs)
        feeds = sources.feed_health(conn, settings.fetch)
    states: dict[str, int] = {}
    for f in feeds:
        states[f.state] = states.get(f.state, 0) + 1
    console.print(runs)
    console.print(unhealthy_table([f for f in feeds if f.state in {"disabled", "failing", "stale"}]))
    console.print(f"{len(feeds)} feed(s): " + (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none yet")
                  + ". Re-enable a disabled feed with `sitrep feeds-enable URL`.")
    return 0
