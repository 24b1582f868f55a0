"""``sitrep feeds-enable``: put feeds that were disabled after repeated failures back on the schedule."""

from __future__ import annotations

import argparse

from sitrep.errors import ConfigError
from sitrep.tables import console


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "feeds-enable",
        help="re-enable feeds disabled after repeated failures (see `sitrep stats`), polled at the next run",
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="feed URLs to enable")
    p.add_argument("--all-disabled", action="store_true", help="every disabled feed")
    p.set_defaults(func=cmd_feeds_enable)


def cmd_feeds_enable(args: argparse.Namespace) -> int:
    from sitrep import db, sources
    from sitrep.settings import Settings

    if not args.urls and not args.all_disabled:
        raise ConfigError("give the feed URLs to enable, or --all-disabled")
    with db.connect_settings(Settings.from_env(), start=True) as conn:
        db.migrate(conn)
        enabled = sources.enable_feeds(conn, None if args.all_disabled else args.urls)
        known = {row[0] for row in conn.execute("SELECT feed_url FROM sources WHERE feed_url = ANY(%s)",
                                                (list(args.urls),))}
    console.print(f"{len(enabled)} feed(s) enabled: " + (", ".join(enabled) or "none were disabled"))
    unknown = [url for url in args.urls if url not in known]
    if unknown:
        raise ConfigError(f"not a feed of this database: {', '.join(unknown)}; see `sitrep feeds list` for their URLs")
    return 0
