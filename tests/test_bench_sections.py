"""`make bench`'s load and fetch sections on small inputs, for real (the test's PostgreSQL, loopback
servers): what each table is made of is there and counts what it claims, and a section says its steps
while it runs. No assertion on speed: the figures are the bench's to report."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace

from rich.console import Console

import bench
from bench import __main__ as bench_main
from bench import fetch as bench_fetch
from bench import load as bench_load
from bench._pagegen import build_corpus
from sitrep import db, demo, sources
from sitrep.settings import FetchSettings, Settings


def test_the_load_round_loads_every_row_once_and_times_both_sides(pg_server):
    generated = bench_load._news_reports(120, 0, 0)
    assert len(generated) == 120 and all(r.minhash for r in generated)

    def reports_for(source_id: int, first: int) -> list:
        return [replace(r, source_id=source_id, entry_id=first + i) for i, r in enumerate(generated)]

    name = f"bench_load_{uuid.uuid4().hex[:8]}"
    raw, raw_binary, staged, total = bench_load._round(pg_server, name, reports_for)  # asserts every entry closed
    assert raw > 0 and raw_binary > 0 and 0 < staged < total

    with db.connect(pg_server.url(name)) as conn:
        bare = conn.execute("SELECT count(*) FROM bare_reports").fetchone()[0]
        reports, stories, grouped = conn.execute(
            "SELECT count(*), count(DISTINCT story_id), count(*) FILTER (WHERE story_id IN"
            " (SELECT story_id FROM reports GROUP BY story_id HAVING count(*) > 1)) FROM reports").fetchone()
        duplicates = conn.execute("SELECT count(*) FROM entries WHERE status = 'duplicate'").fetchone()[0]
    assert bare == 120  # the baseline copied the same rows
    assert reports + duplicates == 120 and reports > 0
    # The generated news has syndicated copies: the loader grouped some reports into stories.
    assert grouped > 0 and stories < reports


def test_the_growing_table_loads_each_batch_and_its_revisions(pg_server):
    name = f"bench_growing_{uuid.uuid4().hex[:8]}"
    table = bench_load._growing(pg_server, 60, 3, revised_share=0.05, name=name)
    # Columns: batch, reports before, rows, revised, LSH keys before, pairs verified, rows/s, stage s, merge s,
    # vs first.
    cells = [[str(c) for c in column.cells] for column in table.columns]
    assert cells[0] == ["1", "2", "3"] and cells[2] == ["60", "63", "63"] and cells[3] == ["0", "3", "3"]
    with db.connect(pg_server.url(name)) as conn:
        reports, revised = conn.execute("SELECT count(*), count(*) FILTER (WHERE revision = 2) FROM reports").fetchone()
        closed = conn.execute("SELECT count(*) FROM entries WHERE status IN ('loaded', 'duplicate')").fetchone()[0]
        keys = conn.execute("SELECT count(*) FROM story_bands").fetchone()[0]
    before = [int(c) for c in cells[1]]
    assert before[0] == 0 and 0 < before[1] <= 60 and before[1] < before[2] <= before[1] + 60  # revisions add none
    assert before[2] < reports <= before[2] + 60
    assert closed == 60 + 63 + 63 and revised == 6  # every entry closed; each batch's 3 revisions loaded
    assert int(cells[4][0]) == 0 and keys > int(cells[4][2]) > int(cells[4][1]) > 0  # the index grew
    assert sum(int(c) for c in cells[5]) > 0  # the generated news has copies: candidates were verified


def test_a_section_says_each_step_on_stderr_while_it_runs(pg_server, capsys):
    """Not a terminal (a CI log, a file): a timestamped line per step, on stderr, the tables alone on stdout."""
    with bench_main._steps(Console(stderr=True), "load"):
        bench_load._growing(pg_server, 30, 2, name=f"bench_steps_{uuid.uuid4().hex[:8]}")
    bench.step("said after the section")  # no section runs: nowhere
    out, err = capsys.readouterr()
    assert "load: the growing table: batch 1 of 2" in err and "load: the growing table: batch 2 of 2" in err
    assert "said after the section" not in err and out == ""


def test_on_a_terminal_the_steps_show_on_a_spinner_line_that_goes_with_the_section():
    screen = io.StringIO()
    with bench_main._steps(Console(file=screen, force_terminal=True, width=100), "pipeline"):
        bench.step("5000 pages: the ingestion DAG through dag.test()")
    shown = screen.getvalue()
    assert "pipeline: 5000 pages: the ingestion DAG through dag.test()" in shown
    assert shown.endswith("\x1b[1A\x1b[2K")  # transient: the line is erased when the section ends
    assert bench._say is None


def test_the_fetch_cycles_show_etag_and_body_hash_skips(db_url, conn, tmp_path):
    state = bench_fetch._State(feeds=4, per_feed=2)
    server = bench_fetch._server(state)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        sources.add_feeds(conn, [sources.FeedSpec(url=f"{base}/feed/{i}.xml", name=f"feed {i}") for i in range(4)])
        conn.commit()
        settings = Settings(database_url=db_url, home=tmp_path, workers=1, batch_sources=50, fetch=FetchSettings(
            allow_private_hosts=True, per_host_delay=0.0, per_host_concurrency=4, global_concurrency=8))
        # Columns: cycle, feeds, feed bodies (200), 304s, feeds parsed, new entries, pages fetched, seconds.
        first = bench_fetch._cycle(settings, state, "first")
        again = bench_fetch._cycle(settings, state, "etag")
        state.honour_etag = False
        hashed = bench_fetch._cycle(settings, state, "hash")
    finally:
        server.shutdown()
        server.server_close()
    assert first[1:7] == ["4", "4", "0", "4", "8", "8"]
    assert again[1:7] == ["4", "0", "4", "0", "0", "0"]
    assert hashed[1:7] == ["4", "4", "0", "0", "0", "0"]
    assert conn.execute("SELECT count(*) FROM reports").fetchone()[0] == 8


def test_the_client_rounds_fetch_every_page_through_both_clients(monkeypatch, tmp_path):
    import bench._pagegen

    monkeypatch.setattr(bench._pagegen, "OUT", tmp_path)
    corpus = build_corpus(24)
    with demo.serve_corpus(corpus.root) as sites:
        bases = {site.root.name: site.base_url for site in sites}
        urls = []
        for page in corpus.pages:
            site, *rest = page.relative_to(corpus.root / "sites").parts
            urls.append(f"{bases[site]}/{'/'.join(rest)}")
        best = bench_fetch._client_rounds(urls, rounds=1)  # raises if a client came back short
    assert set(best) == {"bare", "sitrep"}
    assert all(cpu > 0 and wall > 0 for cpu, wall in best.values())


def test_the_news_generator_never_replays_an_earlier_events_text():
    """Past its first word pool (about a million words) the generator draws a new one: two events' originals
    never share a run of 50 words (a replayed pool made later texts near-copies of earlier events')."""
    from bench import _newsgen
    from sitrep.dedup import tokens

    articles = list(_newsgen.generate(1500, seed=3))
    assert sum(len(a.text.split()) for a in articles) > 2 * (1 << 20)  # past the first pool, and the second
    seen: dict[tuple[str, ...], int] = {}
    for article in (a for a in articles if not a.edits):
        words = tokens(article.text)
        for i in range(0, len(words) - 50, 5):
            owner = seen.setdefault(tuple(words[i:i + 50]), article.event)
            assert owner == article.event, (owner, article.event, " ".join(words[i:i + 50]))
