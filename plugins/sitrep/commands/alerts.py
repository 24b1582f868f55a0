"""``sitrep alerts list|retry``: the alert outbox, its deliveries and dead letters, and replaying them."""

from __future__ import annotations

import argparse
import os

import psycopg

from sitrep.commands import number
from sitrep.errors import ConfigError
from sitrep.tables import Table, console


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    alerts = subparsers.add_parser(
        "alerts", help="alerts fired by the rules (seeds/alert_rules.yaml) and their webhook deliveries",
    ).add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    p = alerts.add_parser("list", help="recent alerts with the state of each delivery")
    p.add_argument("--dead", action="store_true", help="only the dead letters (deliveries that kept failing)")
    p.add_argument("--limit", type=number(int, 1, 1_000_000), default=50, help="rows to show (default 50)")
    p.set_defaults(func=cmd_list)
    p = alerts.add_parser("retry", help="replay dead-lettered deliveries now (after fixing the webhook)")
    p.add_argument("ids", nargs="*", type=number(int, 1), metavar="DELIVERY_ID", help="dead letters to replay (see --dead)")
    p.add_argument("--all", action="store_true", help="replay every dead letter")
    p.set_defaults(func=cmd_retry)


_ROWS = """
SELECT a.alert_id, r.name, a.story_id, array_to_string(a.report_ids, ','), left(a.payload->'report'->>'title', 60),
       d.delivery_id, d.url, d.status, d.attempts, coalesce(d.last_error, ''), a.created_at
FROM alerts a JOIN alert_rules r USING (rule_id)
LEFT JOIN alert_deliveries d USING (alert_id)
WHERE NOT %(dead)s OR d.status = 'dead'
ORDER BY a.alert_id DESC, d.delivery_id LIMIT %(limit)s
"""


def alerts_table(conn: psycopg.Connection, *, dead: bool = False, limit: int = 50, title: str | None = None) -> Table:
    """Alerts and their deliveries, newest first (also what `make demo` prints)."""
    from sitrep.alerts import shown_url

    rows = conn.execute(_ROWS, {"dead": dead, "limit": limit}).fetchall()
    total = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]  # type: ignore[index]
    conn.commit()
    table = Table(title=title or (f"{len(rows)} dead letter(s)" if dead else f"{total} alert(s)"))
    for col in ("alert", "rule", "story", "reports", "title", "delivery", "webhook", "status", "tries", "last error"):
        table.add_column(col, overflow="fold")
    for alert_id, rule, story, reports, title_, delivery, url, status, tries, error, _ in rows:
        table.add_row(str(alert_id), rule, str(story), reports, title_ or "", str(delivery or "-"),
                      shown_url(url) if url else "-", status or "no webhook", str(tries if tries is not None else "-"), error[:80])
    return table


def cmd_list(args: argparse.Namespace) -> int:
    from sitrep import db
    from sitrep.settings import Settings

    with db.connect_settings(Settings.from_env(), start=True) as conn:
        db.migrate(conn)
        console.print(alerts_table(conn, dead=args.dead, limit=args.limit))
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from sitrep import alerts, db
    from sitrep.settings import Settings

    if not args.ids and not args.all:
        raise ConfigError("say which dead letters to replay: DELIVERY_ID... (see `sitrep alerts list --dead`) or --all")
    settings = Settings.from_env()
    with db.connect_settings(settings, start=True) as conn:
        db.migrate(conn)
        # The rules as the file says now (a webhook just fixed there), not as the DAG last synced them; only
        # the file named in this environment, never the default one in place of the DAG's own.
        if os.environ.get("SITREP_ALERT_RULES"):
            try:
                alerts.sync_rules(conn, alerts.load_rules(settings.downstream.alert_rules_file))
            except ConfigError as exc:
                console.print(f"The rules were not read again ({exc}): replaying to the webhooks as last synced.")
        else:
            console.print("Replaying to the webhooks as the sitrep_alerts DAG last synced them: to replay to a URL"
                          " just fixed in the rules file, set SITREP_ALERT_RULES to that file and run this again.")
        replayed = alerts.retry_dead(conn, None if args.all else args.ids)
        if args.ids and replayed < len(set(args.ids)):
            console.print(f"{len(set(args.ids)) - replayed} of the given id(s) are not dead letters: skipped.")
        with console.status(f"delivering {replayed} replayed alert(s)..."):
            result = alerts.deliver(conn, settings)
        console.print(f"{replayed} dead letter(s) replayed: {result.delivered} delivered, {result.failed} failed "
                      f"attempt(s), {result.dead} dead again, {result.pending} still pending")
        console.print(alerts_table(conn, dead=True, title="dead letters left"))
    return 0 if result.dead == 0 else 1
