"""The downstream half of `make demo`: the alerts and export DAGs, a webhook receiver, their tables.

The demo's rules are the real ``seeds/alert_rules.yaml``; their webhook URLs come from
``SITREP_ALERT_WEBHOOK_URL``, which the demo points at a receiver it runs on loopback (so deliveries
succeed), and they are signed with a secret made up for this run (``SITREP_WEBHOOK_SECRET``).
"""

from __future__ import annotations

import secrets
import time

from rich.console import Console

from sitrep.settings import Settings
from sitrep.tables import Table, error_text, step_text
from sitrep.webhooks import WebhookReceiver

__all__ = ["run_downstream"]


def _run(settings: Settings, url: str, dag_id: str, env: dict[str, str], console: Console) -> bool:
    from sitrep import runner

    run = runner.start_dag(settings, url, dag_id, None, extra_env=env)
    started = time.monotonic()
    with console.status(f"[bold]{dag_id}[/] running through Airflow (dag.test())...") as status:
        while run.poll() is None:
            status.update(f"[bold]{dag_id}[/] running {time.monotonic() - started:4.0f}s")
            time.sleep(0.5)
    if not run.wait():
        console.print(error_text(f"the {dag_id} DAG run failed; see {run.log_path}\n{run.tail()}"))
        return False
    return True


def _received_table(receiver: WebhookReceiver) -> Table:
    table = Table(title=f"the demo's webhook receiver ({receiver.base_url}): {len(receiver.received)} request(s)")
    for col in ("path", "status", "delivery", "rule", "report", "signature"):
        table.add_column(col, overflow="fold")
    for hit in receiver.received:
        body = hit.json
        rule = body.get("rule") or body.get("text", "")[:40]
        report = (body.get("report") or {}).get("title") or ""
        signature = {True: "valid", False: "INVALID", None: "unsigned"}[hit.signature_valid]
        table.add_row(hit.path, str(hit.status), hit.headers.get("x-sitrep-delivery", ""), rule, report[:60], signature)
    return table


def run_downstream(settings: Settings, url: str, console: Console) -> int:
    """Run sitrep_alerts then sitrep_export on what the demo loaded; print what they did."""
    from sitrep import db, export
    from sitrep.commands.alerts import alerts_table
    from sitrep.commands.export import files_table

    secret = secrets.token_hex(16)
    with WebhookReceiver(secret=secret) as receiver:
        env = {"SITREP_ALLOW_PRIVATE_HOSTS": "1", "SITREP_ALERT_WEBHOOK_URL": receiver.base_url,
               "SITREP_WEBHOOK_SECRET": secret}
        console.print(step_text(5, "running the downstream DAGs on the reports asset: sitrep_alerts (rules in "
                                   f"seeds/alert_rules.yaml, webhooks to {receiver.base_url}), then sitrep_export"))
        ok = _run(settings, url, "sitrep_alerts", env, console)
        ok = _run(settings, url, "sitrep_export", env, console) and ok
        with db.connect(url) as conn:
            console.print(alerts_table(conn, title="alerts the demo's rules fired (one per rule per story)"))
            console.print(_received_table(receiver))
            base = export.target(settings)
            files = export.committed_files(conn, base)
        rows = sum(f.rows for f in files)
        console.print(files_table(files, f"the warehouse export: {rows} row(s) in {len(files)} Parquet file(s) under {base}"))
    return 0 if ok else 1
