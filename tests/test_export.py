"""The warehouse export: Parquet files whose union is reports_v1, each (report_id, revision) once."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from sitrep import db, export
from sitrep.cli import main
from tests.reports import load_reports, paragraph


def _exported(base: Path) -> list[tuple[int, int]]:
    """(report_id, revision) of every row a Parquet reader sees under base (hidden and _ names skipped)."""
    table = ds.dataset(base, format="parquet", partitioning="hive").to_table(columns=["report_id", "revision"])
    return list(zip(table["report_id"].to_pylist(), table["revision"].to_pylist(), strict=True))


def _view(conn) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    rows = conn.execute("SELECT report_id, revision FROM reports_v1 ORDER BY report_id").fetchall()
    conn.commit()
    return [(int(a), int(b)) for a, b in rows]


def _specs(*keys: str) -> list[dict]:
    return [{"key": k, "title": f"Report {k}", "text": paragraph(k), "relevance": 0.9} for k in keys]


def test_export_writes_every_report_once_with_a_manifest_and_moves_the_watermark(conn, tmp_path):
    a, b, c = _specs("a", "b", "c")
    load_reports(conn, a, {**b, "relevance": 0.2}, {**c, "relevance": None})
    base = tmp_path / "export"

    result = export.run(conn, str(base), threshold=0.5)

    assert sorted(_exported(base)) == _view(conn)
    table = ds.dataset(base, format="parquet", partitioning="hive").to_table().sort_by("ingest_seq")
    assert table["conflict"].to_pylist() == [True, False, None]  # relevance >= SITREP_RELEVANCE_THRESHOLD
    assert table.schema.field("places").type == "string" and table["title"].to_pylist()[0] == "Report a"
    assert result.rows == 3 and len(result.steps) == 1
    max_seq = conn.execute("SELECT max(ingest_seq) FROM reports_v1").fetchone()[0]
    assert result.watermark == max_seq
    manifest = conn.execute(
        "SELECT status, min_seq, max_seq, rows, first_seq, last_seq, files FROM export_manifests"
    ).fetchone()
    assert manifest[:6] == ("committed", 0, max_seq, 3, manifest[4], max_seq)
    for item in manifest[6]:
        data = (base / item["path"]).read_bytes()
        assert item["path"].startswith("ingest_date=")
        assert hashlib.sha256(data).hexdigest() == item["sha256"] and len(data) == item["bytes"]
    on_disk = json.loads(next((base / "_manifests").glob("*.json")).read_text())
    assert on_disk["rows"] == 3 and on_disk["files"] == manifest[6]
    conn.commit()

    again = export.run(conn, str(base))
    assert again.rows == 0 and again.steps == []
    assert sorted(_exported(base)) == _view(conn)


def test_every_file_and_its_folder_is_on_disk_before_the_watermark_moves(conn, tmp_path, monkeypatch):
    # A machine crash cannot be produced here: fsync is watched instead. Each file the step wrote, and
    # the folder its name is in, must be flushed before the manifest and watermark commit (a file the
    # watermark has passed is never written again).
    synced: list[str] = []
    fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), fsync(fd)))
    load_reports(conn, *_specs("a", "b"))
    base = tmp_path / "export"

    export.run(conn, str(base), threshold=0.5)

    written = [p for p in base.rglob("*") if p.is_file()]
    assert len(written) == 2, written  # the Parquet file and the manifest
    for path in written:  # its bytes under the temporary name it was written to, then its folder after the rename
        assert any(name.startswith(f"{path.parent}/.{path.name}.") for name in synced), (path, synced)
        assert str(path.parent) in synced, (path, synced)


def test_a_new_revision_is_exported_again_with_its_revision_number(conn, tmp_path):
    base = str(tmp_path / "export")
    a, b = load_reports(conn, *_specs("a", "b"))
    export.run(conn, base)
    load_reports(conn, {"key": "a", "title": "Report a, updated", "text": paragraph("a") + " Update: more.",
                        "relevance": 0.9})

    result = export.run(conn, base)

    assert result.rows == 1
    assert sorted(_exported(Path(base))) == sorted([(a, 1), (b, 1), (a, 2)])
    assert _view(conn) == sorted([(a, 2), (b, 1)])  # a MERGE keeping the highest revision gets the view


def test_steps_are_bounded_by_batch_rows(conn, tmp_path):
    load_reports(conn, *_specs("a", "b", "c", "d", "e"))

    result = export.run(conn, str(tmp_path / "export"), batch_rows=2)

    assert [s.rows for s in result.steps] == [2, 2, 1]
    assert sorted(_exported(tmp_path / "export")) == _view(conn)


def _export_then_die(url: str, base: str) -> None:
    """A child that writes the files of its first step, then is killed before the watermark commit."""

    def die(step: export.ExportStep) -> None:
        os._exit(17)

    with db.connect(url) as conn:
        export.run(conn, base, on_files_written=die)


def test_a_run_killed_between_file_write_and_watermark_commit_then_retried_is_exactly_once(conn, db_url, tmp_path):
    base = str(tmp_path / "export")
    load_reports(conn, *_specs("a", "b", "c"))

    child = multiprocessing.get_context("fork").Process(target=_export_then_die, args=(db_url, base))
    child.start()
    child.join(60)
    assert child.exitcode == 17
    written = sorted(p.relative_to(base) for p in Path(base).rglob("*.parquet"))
    assert written and sorted(_exported(Path(base))) == _view(conn)  # the files are there...
    state = conn.execute("SELECT status FROM export_manifests").fetchone()[0]
    mark = conn.execute("SELECT ingest_seq FROM downstream_watermarks WHERE consumer = %s", (f"export:{base}",))
    assert state == "planned" and mark.fetchone()[0] == 0  # ...but nothing was committed
    conn.commit()
    load_reports(conn, *_specs("d", "e"))  # more reports land before the retry

    result = export.run(conn, base)

    assert result.steps[0].resumed and [s.rows for s in result.steps] == [3, 2]
    assert sorted(p.relative_to(base) for p in Path(base).rglob("*.parquet"))[: len(written)] == written
    rows = _exported(Path(base))
    assert len(rows) == len(set(rows)) and sorted(rows) == _view(conn)
    assert not list(Path(base).rglob(".*.tmp"))


def test_an_export_path_with_an_unknown_scheme_is_refused_with_what_to_do(conn):
    with pytest.raises(export.ExportError, match="SITREP_EXPORT_PATH"):
        export.run(conn, "nosuchscheme://bucket/sitrep")


def test_the_command_backfills_from_a_sequence_number_into_its_own_folder(conn, settings_env, tmp_path, capsys,
                                                                            monkeypatch):
    ids = load_reports(conn, *_specs("a", "b", "c"))
    since = conn.execute("SELECT ingest_seq FROM reports_v1 WHERE report_id = %s", (ids[0],)).fetchone()[0]
    conn.commit()
    monkeypatch.setenv("SITREP_EXPORT_PATH", str(tmp_path / "export"))

    assert main(["export", "--since", str(since)]) == 0

    out = capsys.readouterr().out
    assert "2 row(s)" in out
    backfill = tmp_path / "export-backfill" / f"since-{since}"  # beside the export: a ** glob reads each once
    assert sorted(_exported(backfill)) == _view(conn)[1:]
    assert main(["export"]) == 0  # the incremental feed is its own destination: everything
    assert sorted(_exported(tmp_path / "export")) == _view(conn)
    assert main(["export", "--since", "-1"]) == 2
    assert "--since: -1 is out of range: give a whole number of at least 0" in capsys.readouterr().err
    # A backfill into the incremental export's own folder would share its watermark and file names.
    assert main(["export", "--since", "0", "--to", f"{tmp_path}/./export/"]) == 2
    assert "incremental export's folder" in capsys.readouterr().err
    assert main(["export", "--since", "0", "--to", f"{tmp_path}/export/_old"]) == 2
    assert "would read those rows twice" in capsys.readouterr().err
    monkeypatch.setenv("SITREP_EXPORT_PATH", "s3://sitrep-exports/")  # beside a bucket is another bucket
    assert main(["export", "--since", "0"]) == 2
    assert "is a bucket's root" in capsys.readouterr().err
    monkeypatch.setenv("SITREP_EXPORT_PATH", str(tmp_path / "export"))
    # A backfill folder holds one --since: another one there resumed the first's watermark and
    # silently exported nothing before it.
    assert main(["export", "--since", "0", "--to", str(backfill)]) == 2
    assert f"holds a backfill since {since}" in capsys.readouterr().err
    assert main(["export", "--since", str(since), "--to", str(backfill)]) == 0  # the same: resumed, nothing new
    assert "0 row(s)" in capsys.readouterr().out


def test_a_report_scored_exactly_at_the_threshold_is_conflict_and_alerts(conn, tmp_path):
    # relevance is a real: 0.7 is stored as 0.69999999, below the float8 0.7 it was compared with, so
    # SITREP_RELEVANCE_THRESHOLD=0.7 (or a rule's min_relevance: 0.7) left out a report scored 0.7.
    from sitrep import alerts

    load_reports(conn, {"key": "k", "title": "Shelling", "text": "shelling " + paragraph("k"), "relevance": 0.7})
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n- {name: default, query: shelling}\n- {name: explicit, query: shelling, min_relevance: 0.7}\n")
    alerts.sync_rules(conn, alerts.load_rules(rules))

    alerts.evaluate(conn, threshold=0.7)
    export.run(conn, str(tmp_path / "e"), threshold=0.7)

    fired = sorted(n for (n,) in conn.execute("SELECT r.name FROM alerts JOIN alert_rules r USING (rule_id)"))
    assert fired == ["default", "explicit"]
    assert ds.dataset(tmp_path / "e", format="parquet", partitioning="hive").to_table()["conflict"].to_pylist() == [True]


def test_a_second_exporter_of_one_target_waits_for_the_first_past_the_statement_timeout(conn, db_url, tmp_path):
    # The DAG's doc says a second run "would only wait for the first": it failed at the statement timeout
    # (120 s) with QueryCanceled, e.g. `sitrep export` by hand during a long export by the DAG.
    load_reports(conn, {"key": "a", "title": "A report", "text": paragraph("a")})
    conn.commit()
    base = str(tmp_path / "e")
    done: list[export.ExportResult | BaseException] = []
    with db.connect(db_url) as first:
        first.autocommit = True
        first.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (export.EXPORT_LOCK, base))  # mid-run
        with db.connect(db_url, statement_timeout_ms=300) as second:
            def export_second() -> None:
                try:
                    done.append(export.run(second, base))
                except BaseException as exc:  # noqa: BLE001 - the failure is the assertion below
                    done.append(exc)

            worker = threading.Thread(target=export_second)
            worker.start()
            worker.join(1.5)  # five statement timeouts: still waiting, not failed
            assert done == []
            first.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (export.EXPORT_LOCK, base))
            worker.join(60)
    assert isinstance(done[0], export.ExportResult) and done[0].watermark == 1


def test_one_folder_spelled_two_ways_is_one_export(conn, tmp_path, monkeypatch):
    # The watermark and lock were keyed by the string: "/data/export" (Airflow's setting) and
    # "/data/export/" or a relative path (a shell's) each exported everything, and readers saw it twice.
    load_reports(conn, {"key": "a", "title": "A report", "text": paragraph("a")},
                 {"key": "b", "title": "B report", "text": paragraph("b")})
    monkeypatch.chdir(tmp_path)
    export.run(conn, str(tmp_path / "e"))
    load_reports(conn, {"key": "c", "title": "C report", "text": paragraph("c")})

    again = export.run(conn, "e/")

    assert again.target == str(tmp_path / "e") and sum(s.rows for s in again.steps) == 1
    table = ds.dataset(tmp_path / "e", format="parquet", partitioning="hive").to_table()
    assert sorted(table["report_id"].to_pylist()) == [1, 2, 3]


def test_an_export_recorded_under_another_spelling_of_its_folder_carries_on(conn, tmp_path):
    # What the one-spelling change must not do to a deployment whose setting ends in "/": export all again.
    load_reports(conn, {"key": "a", "title": "A report", "text": paragraph("a")})
    export.run(conn, str(tmp_path / "e"))
    legacy = str(tmp_path / "e") + "/"  # recorded before spellings were made one
    conn.execute("UPDATE downstream_watermarks SET consumer = %s WHERE consumer LIKE 'export:%%'", (f"export:{legacy}",))
    conn.execute("UPDATE export_manifests SET target = %s", (legacy,))
    conn.commit()
    load_reports(conn, {"key": "b", "title": "B report", "text": paragraph("b")})

    again = export.run(conn, legacy)  # the deployment's setting, as it was: nothing exported twice

    assert sum(s.rows for s in again.steps) == 1 and len(export.committed_files(conn, str(tmp_path / "e"))) == 2


def test_zero_rows_per_file_set_is_refused_not_read_as_the_default(sitrep):
    status, _, err = sitrep("export", "--batch-rows", "0")
    assert status == 2 and "--batch-rows: 0 is out of range: give a whole number from 1" in err
