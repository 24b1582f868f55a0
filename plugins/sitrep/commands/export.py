"""``sitrep export``: the warehouse feed by hand (what the sitrep_export DAG runs), or a backfill."""

from __future__ import annotations

import argparse

from rich.text import Text

from sitrep.commands import number
from sitrep.errors import ConfigError
from sitrep.tables import Table, console


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "export",
        help="export reports_v1 to Parquet past the watermark (as the sitrep_export DAG does), or backfill",
        description="Without --since: the incremental export to SITREP_EXPORT_PATH (resumes an interrupted "
                    "run, moves the watermark). With --since SEQ: a backfill of every report with ingest_seq > SEQ "
                    "into a folder of its own (default <path>-backfill/since-SEQ, beside the export); the watermark is untouched "
                    "and running the same command again resumes it.",
    )
    p.add_argument("--since", type=number(int, 0), metavar="SEQ", help="backfill reports with ingest_seq greater than SEQ")
    p.add_argument("--to", metavar="PATH", help="where the backfill goes (local folder or fsspec URL)")
    p.add_argument("--batch-rows", type=number(int, 1, 10_000_000), default=None, metavar="N", help="rows per file set (default SITREP_EXPORT_BATCH_ROWS, 20000)")
    p.set_defaults(func=cmd_export)


def files_table(files, title: str) -> Table:  # type: ignore[no-untyped-def]
    """Exported files, one row each (also what `make demo` prints)."""
    table = Table(title=title)
    for col in ("file", "rows", "ingest_seq", "sha256", "bytes"):
        table.add_column(col, overflow="fold")
    for f in files:
        table.add_row(f.path, str(f.rows), f"{f.min_seq}-{f.max_seq}", f.sha256[:16], f"{f.bytes:,}")
    return table


def cmd_export(args: argparse.Namespace) -> int:
    from sitrep import db, export
    from sitrep.settings import Settings

    settings = Settings.from_env()
    if args.to and args.since is None:
        raise ConfigError("--to is for a backfill: give --since SEQ too (the incremental path is SITREP_EXPORT_PATH)")
    batch = settings.downstream.export_batch_rows if args.batch_rows is None else args.batch_rows
    base = export.target(settings)
    if args.to and _same_place(args.to, base):
        raise ConfigError(f"--to {args.to}: that is the incremental export's folder (SITREP_EXPORT_PATH), whose"
                          " watermark and file names a backfill would share; give a folder of its own")
    if args.to and _nested(args.to, base):
        raise ConfigError(f"--to {args.to}: one export folder would hold the other, and a reader that lists it"
                          " recursively (a ** glob) would read those rows twice; give a folder beside it")
    if args.since is not None and not args.to and "://" in base and "/" not in base.partition("://")[2].strip("/"):
        raise ConfigError(f"SITREP_EXPORT_PATH {base} is a bucket's root: a backfill beside it would be another"
                          " bucket; give the backfill's place with --to")
    with db.connect_settings(settings, start=True) as conn:
        db.migrate(conn)
        with console.status(Text(f"exporting reports_v1 to {base}...")):  # a status reads a str as markup
            if args.since is None:
                result = export.run(conn, base, batch_rows=batch, threshold=settings.relevance_threshold)
            else:
                to = args.to or f"{base.rstrip('/')}-backfill/since-{args.since}"  # beside it, not inside
                result = export.run(conn, to, batch_rows=batch, start_seq=args.since, kind="backfill",
                                    threshold=settings.relevance_threshold)
    console.print(files_table(result.files, f"sitrep export: {result.rows} row(s) in {len(result.files)} file(s)"
                                            f" under {result.target} (watermark {result.watermark})"))
    return 0


def _nested(a: str, b: str) -> bool:
    """One export path inside the other."""
    from sitrep.export import canonical_target

    a, b = canonical_target(a).rstrip("/") + "/", canonical_target(b).rstrip("/") + "/"
    return a != b and (a.startswith(b) or b.startswith(a))


def _same_place(a: str, b: str) -> bool:
    """Two export paths naming one folder (a local path however spelled, or the same URL)."""
    from sitrep.export import canonical_target

    return canonical_target(a) == canonical_target(b)
