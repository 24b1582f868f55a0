"""The downstream consumers against their bare baselines, same rows, same server, same run.

- Export: ``export.run`` (partitions, hidden temp name + rename, sha256, manifest row and JSON, watermark
  commit, steps of SITREP_EXPORT_BATCH_ROWS) against one ``SELECT * FROM reports_v1`` written with a
  single ``pq.write_table``: what exactly-once costs.
- Alerts: ``alerts.evaluate`` with three rules (full text, places + radius, event types) against one
  bare full-text ``SELECT count(*)`` over the same reports: the cost of the rule conditions, the
  outbox rows and the watermark beside the text search itself.
- Delivery: ``alerts.deliver`` (row lock, signature, status update per delivery) against bare
  ``httpx.post`` calls of the same bodies to the same loopback receiver.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from rich.table import Table

from bench import step
from bench.load import _prepare, _reports

TITLE = "Downstream: export rows/s vs one bare Parquet write; alert evaluation and delivery vs bare SQL/HTTP"
ORDER = 70

_RULES = """
rules:
  - {name: text, query: shelling drone, min_relevance: 0, webhooks: ['http://127.0.0.1:9/hook']}
  - {name: near-kharkiv, places: [{name: Kharkiv, lat: 49.98, lon: 36.25, radius_km: 50}], min_relevance: 0}
  - {name: events, event_types: [shelling, airstrike], min_relevance: 0}
"""


def _load(conn, size: int) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from sitrep import store

    source_id, first = _prepare(conn, size)
    kharkiv = {"name": "Kharkiv", "geonames_id": 706483, "lat": 49.98, "lon": 36.25}
    reports = [replace(r, relevance=0.9, places=[kharkiv] if i % 7 == 0 else [],
                       event_types=["shelling"] if i % 5 == 0 else [])
               for i, r in enumerate(_reports(size, source_id, first))]
    with conn.transaction():
        store.stage_reports(conn, reports)
    store.load_staged(conn, [source_id])


def _bare_export(conn, path: Path) -> float:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sitrep.export import COLUMNS

    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM reports_v1 ORDER BY ingest_seq")  # type: ignore[arg-type]
        names = [c.name for c in cur.description or []]
        columns = list(zip(*cur.fetchall(), strict=True))
    table = pa.table({n: [str(v) if n in {"places", "actors"} else v for v in col] for n, col in zip(names, columns, strict=True)})
    pq.write_table(table, path, compression="zstd")
    conn.commit()
    return time.perf_counter() - started


def _export_rows(conn, size: int, tmp: Path) -> list[str]:  # type: ignore[no-untyped-def]
    from sitrep import export

    _bare_export(conn, tmp / f"warm-{size}.parquet")  # warm the cache: both timings read warm pages
    bare = _bare_export(conn, tmp / f"bare-{size}.parquet")
    started = time.perf_counter()
    result = export.run(conn, str(tmp / f"export-{size}"))
    ours = time.perf_counter() - started
    assert result.rows == size, f"exported {result.rows} of {size}"
    return [f"export {size} reports", f"{size / bare:.0f}", f"{size / ours:.0f}", f"{bare / ours:.2f}",
            f"{len(result.files)} file(s), {len(result.steps)} step(s)"]


def _alert_rows(conn, size: int, tmp: Path) -> list[str]:  # type: ignore[no-untyped-def]
    from sitrep import alerts

    rules_file = tmp / "rules.yaml"
    rules_file.write_text(_RULES)
    alerts.sync_rules(conn, alerts.load_rules(rules_file))
    started = time.perf_counter()
    conn.execute("SELECT count(*) FROM reports_v1 WHERE to_tsvector('english', coalesce(title, '') || ' ' || text)"
                 " @@ websearch_to_tsquery('english', 'shelling drone')").fetchone()
    bare = time.perf_counter() - started
    conn.commit()
    started = time.perf_counter()
    created = alerts.evaluate(conn, threshold=0.5)
    ours = time.perf_counter() - started
    return [f"evaluate 3 rules on {size} reports", f"{size / bare:.0f}", f"{size / ours:.0f}", f"{bare / ours:.2f}",
            f"{len(created)} alert(s)"]


def _delivery_rows(conn, settings, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    import httpx

    from sitrep import alerts
    from sitrep.webhooks import WebhookReceiver

    with WebhookReceiver() as receiver:
        conn.execute("UPDATE alert_deliveries SET url = %s", (receiver.url("/hook"),))
        conn.execute("DELETE FROM alert_deliveries WHERE delivery_id NOT IN"
                     " (SELECT delivery_id FROM alert_deliveries ORDER BY delivery_id LIMIT %s)", (count,))
        conn.commit()
        n = conn.execute("SELECT count(*) FROM alert_deliveries").fetchone()[0]
        conn.commit()
        body = b'{"rule": "bench", "report": {"title": "x"}}'
        started = time.perf_counter()
        with httpx.Client() as client:
            for _ in range(n):
                client.post(receiver.url("/bare"), content=body)
        bare = time.perf_counter() - started
        started = time.perf_counter()
        result = alerts.deliver(conn, settings, budget=60)
        ours = time.perf_counter() - started
    assert result.delivered == n, f"delivered {result.delivered} of {n}"
    return [f"deliver {n} webhooks (loopback)", f"{n / bare:.0f}", f"{n / ours:.0f}", f"{bare / ours:.2f}",
            "signed: no; one row lock + update each"]


def run(args: argparse.Namespace) -> Table:
    from dataclasses import replace

    from sitrep import db
    from sitrep.settings import FetchSettings, Settings

    sizes = [1000, 5000] + ([50000] if args.full else [])
    table = Table(title="downstream vs bare baselines (5 KB texts; rows/s, higher is better)")
    for col, justify in (("what", "left"), ("baseline /s", "right"), ("sitrep /s", "right"),
                         ("ratio", "right"), ("note", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory(prefix="sitrep-bench-downstream-") as folder:
        tmp = Path(folder)
        server = db.EmbeddedPostgres(tmp / "pg")
        try:
            server.start("postgres")
            for size in sizes:
                step(f"{size} reports: export, alerts and deliveries")
                name = f"downstream_{size}"
                db._create_database(server.url("postgres"), name)
                with db.connect(server.url(name)) as conn:
                    db.migrate(conn)
                    _load(conn, size)
                    table.add_row(*_export_rows(conn, size, tmp))
                    if size == sizes[0]:
                        table.add_row(*_alert_rows(conn, size, tmp))
                        settings = replace(Settings(database_url=server.url(name)),
                                           fetch=FetchSettings(allow_private_hosts=True))
                        table.add_row(*_delivery_rows(conn, settings, 200))
        finally:
            server.stop()
    return table


__all__ = ["ORDER", "TITLE", "run"]
