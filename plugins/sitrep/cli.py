"""The ``sitrep`` command: database, feeds, ingestion and the offline demo.

Every error a user can cause ends in one line that says what to do (exit status 2), never a
traceback; ``--help`` works on every command. Long commands show progress and end with a table.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sitrep.commands import Parser, UsageError, number
from sitrep.errors import ConfigError, SitrepError
from sitrep.metrics import progress
from sitrep.settings import PROJECT_ROOT, Settings
from sitrep.tables import Table, ago, console, err_console, error_text, rhythm_text, step_text, warning_text

if TYPE_CHECKING:
    import psycopg


# ----------------------------------------------------------------------------------------- helpers


def _settings() -> Settings:
    return Settings.from_env()


def _url(settings: Settings, *, start: bool = True) -> str:
    from sitrep import db

    return db.database_url(settings, start=start)


def _conn(settings: Settings) -> psycopg.Connection:
    from sitrep import db

    return db.connect_settings(settings, start=True)


# ---------------------------------------------------------------------------------------------- db


def cmd_db(args: argparse.Namespace) -> int:
    from sitrep import db

    settings = _settings()
    if args.action == "start":
        with db.connect_settings(settings, start=True) as conn:
            applied = db.migrate(conn)
        console.print(f"PostgreSQL is running; {len(applied)} migration(s) applied.")
        console.print(_url(settings, start=False))
    elif args.action == "stop":
        if settings.database_url:
            console.print("SITREP_DATABASE_URL points at a server sitrep does not manage: nothing to stop.")
        elif db.embedded(settings).stop():
            console.print(f"Stopped the embedded PostgreSQL ({settings.home / 'pg'}).")
        else:
            console.print("The embedded PostgreSQL was not running.")
    elif args.action == "url":
        console.print(_url(settings, start=False), soft_wrap=True)
    elif args.action == "migrate":
        with db.connect_settings(settings, start=True) as conn:  # a long migration: SITREP_STATEMENT_TIMEOUT_MS
            applied = db.migrate(conn, log_drift=False)
            drift = db.migration_drift(conn)
        console.print(f"{len(applied)} migration(s) applied: {', '.join(applied) or 'already up to date'}")
        for problem in drift:
            err_console.print(warning_text(problem), soft_wrap=True)
        return 1 if drift else 0
    return 0


# ------------------------------------------------------------------------------------------- feeds


def cmd_feeds_add(args: argparse.Namespace) -> int:
    from sitrep import sources

    if args.name is not None and len(args.urls) > 1:
        raise ConfigError(f"--name names one feed, and {len(args.urls)} URLs were given: add them one at a time, or"
                          " list them with their names in a YAML file for `sitrep feeds import`")
    specs = [sources.FeedSpec(url=u, name=args.name, interval_minutes=args.interval) for u in args.urls]
    with _conn(_settings()) as conn:
        _migrated(conn)
        added, known = sources.add_feeds(conn, specs)
    console.print(f"{added} feed(s) added, {known} already known.")
    return 0


def cmd_feeds_import(args: argparse.Namespace) -> int:
    from sitrep import sources

    specs = sources.load_feed_file(Path(args.file))
    with _conn(_settings()) as conn:
        _migrated(conn)
        added, known = sources.add_feeds(conn, specs)
    console.print(f"{args.file}: {added} feed(s) added, {known} already known.")
    return 0


def cmd_feeds_list(args: argparse.Namespace) -> int:
    """Every feed with its health: state (ok, new, stale, failing, disabled), schedule, last yield."""
    from sitrep import sources

    settings = _settings()
    with _conn(settings) as conn:
        _migrated(conn)
        feeds = sources.feed_health(conn, settings.fetch)
    table = Table(title=f"{len(feeds)} feed(s); stale = polls fine but nothing new for longer than its rhythm")
    for col in ("name", "feed", "state", "HTTP", "failures", "polled", "next poll", "items", "last new", "rhythm",
                "reports", "problem"):
        table.add_column(col, overflow="fold")
    for f in feeds:
        table.add_row(f.name, f.feed_url, f.state + ("" if f.validators_trusted else " (no 304)"),
                      str(f.last_status or "-"), str(f.failures), ago(f.last_polled_at),
                      "-" if not f.enabled else ago(f.next_poll_at), str(f.entries_seen), ago(f.last_new_entry_at),
                      rhythm_text(f.rhythm), str(f.reports), (f.problem or "")[:80])
    console.print(table)
    return 0


def _migrated(conn) -> None:  # type: ignore[no-untyped-def]
    from sitrep import db

    db.migrate(conn)


# ------------------------------------------------------------------------------------------ ingest


def _ingest_status(seconds: float, entries: int, pending: int, staged: int, new_reports: int) -> str:
    """The ingest's status line: the collect stages pages a chunk at a time, so it moves while pages are
    fetched and extracted, not only when a batch loads."""
    return (f"[bold]sitrep_ingest[/] running {seconds:4.0f}s: {entries} entries seen, {pending} pending"
            f" ({staged} collected), {new_reports} new reports")


def run_ingest(settings: Settings, *, due_only: bool, extra_env: dict[str, str] | None = None) -> int:
    """Run the ingestion DAG once through dag.test(), showing progress, then a summary table."""
    from sitrep import runner
    from sitrep.settings import ingest_schedule

    ingest_schedule()  # the DAG file reads it: a mistake there is an import error deep in the run's log
    url = _url(settings, start=True)
    started = datetime.now(UTC)
    with _conn(settings) as conn:
        _migrated(conn)
        before = progress(conn).reports
        feeds = (conn.execute("SELECT count(*) FROM sources WHERE kind = 'feed' AND enabled").fetchone() or (0,))[0]
        conn.commit()
        if feeds == 0:
            console.print("No enabled feeds: add some with `sitrep feeds add URL` or `sitrep feeds import seeds/feeds.yaml`.")
            return 0
        run = runner.start_dag(settings, url, "sitrep_ingest", {"mode": "due" if due_only else "all"}, extra_env)
        t0 = time.monotonic()
        with console.status("starting Airflow...") as status:
            while run.poll() is None:
                reports, entries, pending, staged = progress(conn)
                status.update(_ingest_status(time.monotonic() - t0, entries, pending, staged, reports - before))
                time.sleep(0.5)
        ok = run.wait()
        after = progress(conn).reports
        table = ingest_table(conn, started, title=f"sitrep ingest: {after - before} new report(s) in"
                                                  f" {time.monotonic() - t0:.0f}s")
    console.print(table)
    if not ok:
        err_console.print(error_text(f"the ingestion DAG run failed; see {run.log_path}\n{run.tail()}"))
        return 1
    return 0


def ingest_table(conn: psycopg.Connection, since: datetime, *, title: str) -> Table:
    """Each feed polled since ``since``: its poll, its new entries and reports, and its pages that failed
    (how many, and the most common reason) beside the poll's own problem."""
    rows = conn.execute(
        """
        SELECT s.name, p.http_status, p.not_modified, p.entries_seen, p.new_entries, p.error,
               (SELECT count(*) FROM reports r WHERE r.source_id = s.source_id AND r.ingested_at >= %(since)s),
               f.failed, f.reason
        FROM sources s
        JOIN LATERAL (SELECT * FROM poll_log l WHERE l.source_id = s.source_id AND l.polled_at >= %(since)s
                      ORDER BY polled_at DESC LIMIT 1) p ON true
        CROSS JOIN LATERAL (  -- reasons told apart without their URLs and numbers ("no text in 'URL': 12 words")
            SELECT sum(n) AS failed, (array_agg(example ORDER BY n DESC, example))[1] AS reason
            FROM (SELECT min(e.error) AS example, count(*) AS n FROM entries e
                  WHERE e.source_id = s.source_id AND e.status = 'failed' AND e.updated_at >= %(since)s
                  GROUP BY regexp_replace(regexp_replace(e.error, '''[^'']*''', '', 'g'), '[0-9]+', '', 'g')
                  ) by_reason
        ) f
        ORDER BY s.name
        """,
        {"since": since},
    ).fetchall()
    table = Table(title=title)
    for col in ("feed", "HTTP", "entries", "new entries", "new reports", "pages failed", "problem"):
        table.add_column(col, overflow="fold")
    for name, status, not_modified, seen, new, error, loaded, failed, reason in rows:
        problem = error or (f"pages: {reason}" if reason else "")
        table.add_row(name, "304" if not_modified and status == 304 else str(status or "-"), str(seen), str(new),
                      str(loaded), str(failed or 0), problem[:100])
    return table


def cmd_ingest(args: argparse.Namespace) -> int:
    return run_ingest(_settings(), due_only=args.due)


def cmd_ingest_files(args: argparse.Namespace) -> int:
    from sitrep import pipeline

    settings = _settings()
    with _conn(settings) as conn:
        _migrated(conn)
    with console.status(f"loading {len(args.paths)} path(s)..."):
        loaded = pipeline.ingest_files(settings, [Path(p) for p in args.paths])
    counts = loaded.counts
    if counts["files"] == 0:
        raise ConfigError(f"nothing to load: {', '.join(args.paths)} hold(s) no *.txt file")
    table = Table(title="sitrep ingest-files")
    for key in counts:
        table.add_column(key)
    table.add_row(*(str(v) for v in counts.values()))
    console.print(table)
    for path, reason in loaded.not_loaded[:20]:
        err_console.print(error_text(f"{path} not loaded: {reason}"), soft_wrap=True)
    if counts["failed"] and not (counts["inserted"] or counts["updated"] or counts["aliased"]):
        err_console.print(error_text(f"none of the {counts['failed']} file(s) loaded (a file is 'date YYYY-MM-DD"
                                     " <text>', the date optional)"), soft_wrap=True)
        return 1
    return 0


# -------------------------------------------------------------------------------------------- demo


#: The demo's table: (column, least width, most width, dropped when the page is narrow: lowest first).
_REPORT_COLUMNS = (("id", 5, 5, 9), ("source", 8, 14, 9), ("title", 20, 44, 10), ("published", 10, 10, 9),
                   ("from", 7, 7, 3), ("lang", 4, 4, 5), ("words", 5, 5, 4), ("story", 5, 5, 9), ("dup of", 6, 6, 6),
                   ("event types", 12, 24, 2), ("places", 12, 30, 8))


def _fit_columns(columns: Sequence[tuple[str, int, int, int]], page: int) -> dict[str, int]:
    """Column widths that fit the page: Rich squeezes the short columns first, to a bare "…" (ids, dates
    and counts that say nothing), so the least wanted columns go instead, and the long ones share the rest."""
    kept = list(columns)
    while len(kept) > 1 and sum(low for _, low, _, _ in kept) + 3 * len(kept) + 1 > page:
        kept.remove(min(kept, key=lambda c: c[3]))
    spare = max(0, page - sum(low for _, low, _, _ in kept) - 3 * len(kept) - 1)
    room = sum(high - low for _, low, high, _ in kept) or 1
    return {name: low + min(high - low, spare * (high - low) // room) for name, low, high, _ in kept}


def print_reports(settings: Settings, limit: int = 60) -> None:
    with _conn(settings) as conn:
        rows = conn.execute(
            """
            SELECT report_id, source, left(title, 60), published_at::date, published_at_source, language,
                   word_count, story_id, duplicate_of,
                   array_to_string(event_types, ', '),
                   (SELECT string_agg(p->>'name', ', ') FROM jsonb_array_elements(places) p)
            FROM reports_v1 ORDER BY ingest_seq LIMIT %s
            """,
            (limit,),
        ).fetchall()
        total = (conn.execute("SELECT count(*) FROM reports_v1").fetchone() or (0,))[0]
    table = Table(title=f"reports_v1: {total} report(s)" + (f" (first {limit})" if total > limit else ""))
    widths = _fit_columns(_REPORT_COLUMNS, console.width)
    for name, width in widths.items():
        table.add_column(name, no_wrap=True, overflow="ellipsis", width=width)
    keep = [i for i, (name, *_) in enumerate(_REPORT_COLUMNS) if name in widths]
    for row in rows:
        table.add_row(*("" if row[i] is None else str(row[i]) for i in keep))
    console.print(table)


def cmd_demo(args: argparse.Namespace) -> int:
    from sitrep import db, demo, pipeline, sources

    settings = _settings()
    url = _url(settings, start=True)
    with db.connect(url) as conn:
        db.migrate(conn)
    console.print(step_text(1, f"PostgreSQL ready at {url}"))
    ports_file = settings.home / "demo-ports.json"
    env = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_PER_HOST_DELAY": "0", "SITREP_PER_HOST_CONCURRENCY": "8"}
    with demo.serve_corpus(demo.DEMO_ROOT, demo.remembered_ports(ports_file)) as sites:
        demo.remember_ports(ports_file, sites)
        feed_urls = [s.feed_url for s in sites]
        with db.connect(url) as conn:
            sources.add_feeds(conn, [sources.FeedSpec(url=s.feed_url, name=s.name, interval_minutes=10) for s in sites])
            sources.enable_feeds(conn, feed_urls)  # the last demo took them off the schedule
        console.print(step_text(2, f"serving {len(sites)} demo sites on 127.0.0.1: "
                                   + ", ".join(f"{s.name} ({s.feed_url})" for s in sites)))
        console.print(step_text(3, "running the ingestion DAG through Airflow (dag.test())..."))
        try:
            status = run_ingest(settings, due_only=False, extra_env=env)
        finally:  # served only while the demo runs: a later `sitrep ingest` or `make airflow` must not poll them
            with db.connect(url) as conn:
                sources.disable_feeds(conn, feed_urls, "a demo feed, served on 127.0.0.1 only while `make demo`"
                                                       " runs (the next demo enables it again)")
        if status:
            return status
    samples = sorted((PROJECT_ROOT / "seeds" / "samples").glob("*.txt"))
    console.print(step_text(4, f"loading {len(samples)} seed-format file(s) from seeds/samples/"))
    pipeline.ingest_files(settings, samples)
    print_reports(settings)
    from sitrep.demo_downstream import run_downstream  # alerts (webhooks on loopback) and the Parquet export

    if run_downstream(settings, url, console):
        return 1
    console.print(
        "\nQuery it yourself:\n"
        f"  psql '{url}' -c 'SELECT source, title, published_at, places FROM reports_v1 ORDER BY ingest_seq'\n"
        "  .venv/bin/sitrep query 'SELECT count(*) FROM reports_v1'\n"
        "The database keeps running; `make down` stops it. The demo's reports stay in it and its feeds are"
        " disabled; to start afresh: `make down && rm -rf .sitrep`."
    )
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Run one read-only SQL statement and print the result as a table."""
    import psycopg

    verb = _FIRST_WORD.match(args.sql)
    first = verb.group(1).lower() if verb else ""
    if first not in _QUERY_VERBS:
        raise ConfigError(f"sitrep query runs one statement that reads ({', '.join(sorted(_QUERY_VERBS))}), not"
                          f" {first or 'an empty one'!r}: use psql with the URL from `sitrep db url` for anything else")
    with _conn(_settings()) as conn:
        _migrated(conn)  # as every command does: reports_v1 on a new database, not "relation does not exist"
        conn.commit()
        conn.read_only = True
        # As a reader of every table (PostgreSQL's pg_read_all_data), not as the superuser the embedded
        # server's URL names, so that a pasted COPY ... TO PROGRAM or pg_read_file is refused. A guard
        # against mistakes, not a sandbox: the session is still the URL's user, whose statement could
        # set its role back. A user who may not take that role keeps its own.
        conn.execute("SELECT 1")  # the query's transaction begins (autocommit is off): the next block is a savepoint
        try:
            with conn.transaction():
                conn.execute("SET LOCAL ROLE pg_read_all_data")
        except psycopg.errors.InsufficientPrivilege:
            pass
        # One statement only: a simple query runs several, and "COMMIT; DELETE ..." would end the
        # read-only transaction before deleting. A query runs in a server-side cursor (DECLARE takes one
        # SELECT), so --limit rows cross the wire, not the whole result; EXPLAIN and SHOW are prepared.
        if first in {"explain", "show"}:
            cur = conn.execute(args.sql, prepare=True)
            rows = cur.fetchmany(args.limit + 1) if cur.description else []
            names = [c.name for c in cur.description or []]
        else:
            with conn.cursor(name="sitrep_query") as named:
                named.itersize = min(args.limit + 1, 1000)
                named.execute(args.sql)
                rows = named.fetchmany(args.limit + 1)
                names = [c.name for c in named.description or []]
    more = len(rows) > args.limit
    table = Table(title=f"the first {args.limit} row(s)" if more else f"{len(rows)} row(s)")
    for name in names:
        table.add_column(name, overflow="fold")
    for row in rows[: args.limit]:
        table.add_row(*("" if v is None else _cell(v) for v in row))
    console.print(table)
    if more:
        console.print(f"More rows were not read: raise --limit (now {args.limit}) to see them.")
    return 0


#: What `sitrep query` runs: statements that read. (DO, CALL, SET, COPY... go to psql: a DO block could
#: RESET ROLE and run what the read-only role refuses.)
_QUERY_VERBS = frozenset({"select", "with", "values", "table", "explain", "show"})
#: The statement's first word, after spaces, parentheses and SQL comments (-- ... and /* ... */).
_FIRST_WORD = re.compile(r"(?:\s|\(|--[^\n]*(?:\n|$)|/\*.*?\*/)*(\w+)", re.DOTALL)


def _cell(value: object) -> str:
    """A value as SQL users read it: JSON for jsonb and arrays, ISO times; long ones cut with a mark."""
    import json

    if isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    elif isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, bytes | memoryview):
        text = "\\x" + bytes(value).hex()
    else:
        text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


# ---------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sitrep",
        description="Streaming news ingestion for conflict reporting: feeds in, clean reports in PostgreSQL.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("db", help="the database: start, stop, url, migrate")
    p.add_argument("action", choices=["start", "stop", "url", "migrate"],
                   help="start/stop the embedded server, print the URL in use, apply migrations")
    p.set_defaults(func=cmd_db)

    feeds = sub.add_parser("feeds", help="register and inspect feeds").add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    p = feeds.add_parser("add", help="register one or more feed URLs")
    p.add_argument("urls", nargs="+", metavar="URL")
    p.add_argument("--name", help="display name (only with a single URL; default: the host)")
    p.add_argument("--interval", type=int, default=None, metavar="MINUTES", help="poll interval (default 10)")
    p.set_defaults(func=cmd_feeds_add)
    p = feeds.add_parser("import", help="register the feeds of a YAML file such as seeds/feeds.yaml")
    p.add_argument("file")
    p.set_defaults(func=cmd_feeds_import)
    p = feeds.add_parser("list", help="every feed with its health")
    p.set_defaults(func=cmd_feeds_list)

    p = sub.add_parser("ingest", help="run one cycle of the ingestion DAG (dag.test()) over every enabled feed")
    p.add_argument("--due", action="store_true", help="poll only the feeds that are due, as the schedule does")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ingest-files", help="load text files in the seed format ('date YYYY-MM-DD <text>')")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders of *.txt files")
    p.set_defaults(func=cmd_ingest_files)

    p = sub.add_parser("demo", help="the offline demo: serve seeds/demo on loopback, ingest it, show the result")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("query", help="run one read-only SQL statement, e.g. against reports_v1")
    p.add_argument("sql")
    p.add_argument("--limit", type=number(int, 1, 1_000_000), default=50, help="rows to print (default 50)")
    p.set_defaults(func=cmd_query)

    from sitrep.commands import register_all

    register_all(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        err_console.print(error_text(str(exc)), soft_wrap=True)
        return 2
    except SystemExit as exc:  # --help, printed by argparse: a status, in-process too
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SitrepError as exc:
        err_console.print(error_text(str(exc)), soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    except OSError as exc:  # a folder we can't create or read (SITREP_HOME, an export path): one line
        err_console.print(error_text(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")), soft_wrap=True)
        return 2
    except Exception as exc:  # psycopg errors and the like: one line, and where to look
        import psycopg

        if isinstance(exc, psycopg.errors.QueryCanceled):
            err_console.print(error_text(f"database error: {str(exc).strip().splitlines()[0]}: the statement ran"
                                         " longer than SITREP_STATEMENT_TIMEOUT_MS allows; raise it"), soft_wrap=True)
            return 2
        if isinstance(exc, psycopg.Error):
            err_console.print(error_text(f"database error: {str(exc).strip().splitlines()[0]}"), soft_wrap=True)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
