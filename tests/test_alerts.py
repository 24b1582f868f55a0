"""Alert rules, the outbox and webhook deliveries, against the real database and a loopback receiver."""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import threading
import tracemalloc
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from sitrep import alerts, db, pipeline
from sitrep.cli import main
from sitrep.errors import ConfigError
from sitrep.netguard import AddressPolicy
from sitrep.settings import PROJECT_ROOT, DownstreamSettings
from sitrep.webhooks import WebhookReceiver
from tests.conftest import empty_database
from tests.pages import drip
from tests.reports import load_reports, paragraph

SECRET = "test-secret-not-for-production"
KHARKIV = {"name": "Kharkiv", "geonames_id": 706483, "country_code": "UA", "lat": 49.98, "lon": 36.25, "mentions": 2}
VOVCHANSK = {"name": "Vovchansk", "geonames_id": 689558, "country_code": "UA", "lat": 50.29, "lon": 36.94}
KYIV = {"name": "Kyiv", "geonames_id": 703448, "country_code": "UA", "lat": 50.45, "lon": 30.52}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SITREP_WEBHOOK_SECRET", SECRET)
    with WebhookReceiver(secret=SECRET) as server:
        monkeypatch.setenv("SITREP_ALERT_WEBHOOK_URL", server.base_url)
        yield server


@pytest.fixture
def fast(settings):  # type: ignore[no-untyped-def]
    """Settings with retries that wait milliseconds, not seconds."""
    return replace(settings, downstream=DownstreamSettings(delivery_attempts=3, delivery_backoff=0.01,
                                                           delivery_timeout=5))


def _rules(tmp_path: Path, text: str) -> list[alerts.Rule]:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return alerts.load_rules(path)


# ------------------------------------------------------------------------------------------ rules


def test_the_seed_rules_file_loads_with_webhooks_from_the_environment(receiver):
    rules = alerts.load_rules(PROJECT_ROOT / "seeds" / "alert_rules.yaml")

    by_name = {r.name: r for r in rules}
    assert {"kharkiv-oblast-shelling", "bakhmut-battle"} <= by_name.keys()
    assert all(h.url.startswith(receiver.base_url) for r in rules for h in r.webhooks)
    kharkiv = by_name["kharkiv-oblast-shelling"].places[0]
    assert kharkiv.radius_km == 40 and kharkiv.lat == pytest.approx(49.98, abs=0.1)  # centre from GeoNames


@pytest.mark.parametrize(("text", "message"), [
    ("rules: [{query: x}]", "has no name"),
    ("rules: [{name: a, query: x, colour: red}]", "unknown key"),
    ("rules: [{name: a, query: x, webhooks: [{url: 'http://h/', secret: abc}]}]", "never put a secret"),
    ("rules: [{name: a, query: x, webhooks: [{url: 'http://h/', format: xml}]}]", "format 'xml'"),
    ("rules: [{name: a}]", "at least one condition"),
    ("rules: [{name: a, query: x, min_relevance: 2}]", "between 0 and 1"),
    ("rules: [{name: a, query: x, webhooks: ['${SITREP_NO_SUCH_VARIABLE}/x']}]", "SITREP_NO_SUCH_VARIABLE is not set"),
    ("rules: [{name: a, query: x}, {name: a, query: y}]", "unique"),
    ("rules: {name: a}", "'rules:' list"),
    ("rules: [{name: a, places: [{name: Nowhere-On-Earth, radius_km: 5}]}]", "give lat and lon"),
    ("rules: [{name: a, query: x, webhooks: ['http://xn--/hook']}]", "is not a valid URL"),
    ("rules: [{name: a, query: x, webhooks: ['ftp://example.org/hook']}]", "not an http"),
    # the database cast these with ::float in every evaluation: one such rule stopped all alerts
    ("rules: [{name: a, places: [{lat: 50.45, lon: 30.52, radius_km: 20 km}]}]",
     "rule 'a': radius_km must be a number from 0 to 20037 .a decimal point, no unit., not '20 km'"),
    ("rules: [{name: a, places: [{lat: '50,45', lon: 30.52, radius_km: 20}]}]", "rule 'a': lat must be a number"),
    ("rules: [{name: a, places: [{lat: 50.45, lon: 190, radius_km: 20}]}]", "lon must be a number from -180 to 180"),
    ("rules: [{name: a, places: [{lat: 50.45, lon: 30.52, radius_km: 0}]}]", "radius_km must be more than 0"),
    # accepted before, and could never match anything
    ("rules: [{name: a, places: [{lat: 50.45, lon: 30.52}]}]", "needs radius_km"),
    ("rules: [{name: a, places: [{lat: 50.45, radius_km: 5}]}]", "needs both lat and lon"),
    ("rules: [{name: a, query: [shelling, drones]}]", "query must be one search string"),
])
def test_a_bad_rules_file_is_refused_with_the_rule_and_what_to_do(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        _rules(tmp_path, text)


def test_sync_upserts_by_name_and_disables_a_rule_removed_from_the_file(conn, tmp_path):
    alerts.sync_rules(conn, _rules(tmp_path, "rules: [{name: a, query: x}, {name: b, query: y}]"))
    alerts.sync_rules(conn, _rules(tmp_path, "rules: [{name: a, query: changed}]"))

    rows = conn.execute("SELECT name, enabled, query FROM alert_rules ORDER BY name").fetchall()
    assert rows == [("a", True, "changed"), ("b", False, "y")]


def test_one_place_or_one_webhook_written_without_a_list_is_that_one(conn, tmp_path, receiver):
    # `places: Kharkiv` was the filters K, h, a, r, k, i, v (the rule never fired, no error), and
    # `webhooks: URL` (the seed file's own wording) failed with "webhook URL 'h' is not an http(s) URL".
    rules = _rules(tmp_path, f"rules:\n- name: one\n  places: Kharkiv\n  webhooks: {receiver.url('/one')}\n")
    assert [p.name for p in rules[0].places] == ["Kharkiv"] and [w.url for w in rules[0].webhooks] == [receiver.url("/one")]
    alerts.sync_rules(conn, rules)
    load_reports(conn, REPORTS[0])

    assert len(alerts.evaluate(conn, threshold=0.5)) == 1


@pytest.mark.parametrize(("rule", "message"), [
    ("{name: r, query: shelling, text_config: englsh}",
     "rule 'r': text_config 'englsh' is not a text search configuration of this database; use one of "),
    ("{name: r, query: shelling, text_config: 'a.b.c.d'}", "rule 'r': text_config 'a.b.c.d' is not"),
    ("{name: r, query: shelling, enabled: 'false'}", "rule 'r': enabled must be true or false (unquoted), not 'false'"),
])
def test_a_rule_the_database_would_refuse_or_misread_is_a_config_error_naming_it(conn, tmp_path, rule, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{rule}]"))
    assert conn.execute("SELECT count(*) FROM alert_rules").fetchone()[0] == 0


def test_a_rule_taken_out_of_the_file_and_put_back_is_enabled_again(conn, tmp_path):
    both = "rules: [{name: a, query: shelling}, {name: b, query: shelling}]"
    alerts.sync_rules(conn, _rules(tmp_path, both))
    alerts.sync_rules(conn, _rules(tmp_path, "rules: [{name: b, query: shelling}]"))  # a commented out for a day
    alerts.sync_rules(conn, _rules(tmp_path, both))
    load_reports(conn, {"key": "k", "title": "Shelling", "text": "shelling " + paragraph("k"), "relevance": 0.9})

    alerts.evaluate(conn, threshold=0.5)

    assert dict(conn.execute("SELECT name, enabled FROM alert_rules").fetchall()) == {"a": True, "b": True}
    fired = [n for (n,) in conn.execute("SELECT r.name FROM alerts JOIN alert_rules r USING (rule_id) ORDER BY 1")]
    assert fired == ["a", "b"]


# --------------------------------------------------------------------------------------- matching


def test_a_report_too_long_for_a_tsvector_never_stops_the_alerts(conn, tmp_path):
    """1.3 MB of distinct tokens (a data dump under the 10 MB page cap) is past PostgreSQL's 1 MB limit
    of a tsvector: the query matches the report's first 100,000 characters, and the reports after it alert."""
    dump = " ".join(hashlib.sha256(str(i).encode()).hexdigest()[:10] for i in range(120_000))
    load_reports(conn, {"key": "dump", "title": "Data dump", "text": "shelling " + dump, "relevance": 0.9},
                 {"key": "k", "title": "Shelling", "text": "shelling of the market " + paragraph("k"), "relevance": 0.9})
    alerts.sync_rules(conn, _rules(tmp_path, "rules: [{name: r, query: shelling}]"))

    alerts.evaluate(conn, threshold=0.5)

    assert conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 2
    assert conn.execute("SELECT ingest_seq FROM downstream_watermarks WHERE consumer = 'alerts'").fetchone()[0] == 2

REPORTS = [
    {"key": "kharkiv", "title": "Shelling hits Kharkiv market", "text": paragraph("Artillery shelling of the market"),
     "relevance": 0.9, "places": [KHARKIV], "event_types": ["shelling"], "actors": [{"name": "Russian Armed Forces"}]},
    {"key": "vovchansk", "title": "Battle for Vovchansk", "text": paragraph("Street battle in the town"),
     "relevance": 0.8, "places": [VOVCHANSK], "event_types": ["battle"], "language": "en"},
    {"key": "kyiv", "title": "Drones over Kyiv", "text": paragraph("Air defence shelling drones at night"),
     "relevance": 0.7, "places": [KYIV], "event_types": ["drone_strike"], "language": "uk"},
    {"key": "football", "title": "Kharkiv football club wins", "text": paragraph("A match in the league"),
     "relevance": 0.05, "places": [KHARKIV]},
]


@pytest.mark.parametrize(("rule", "expected"), [
    ("query: shelling", {"kharkiv", "kyiv"}),
    ("query: '\"shelling of the market\"'", {"kharkiv"}),
    ("query: shelling -drones", {"kharkiv"}),
    ("places: [Kharkiv]", {"kharkiv"}),  # the football report is below the relevance threshold
    ("places: [Kharkiv]\n  min_relevance: 0", {"kharkiv", "football"}),
    ("places: [689558]", {"vovchansk"}),  # a geonames id
    ("places: [{name: Kharkiv, radius_km: 100}]", {"kharkiv", "vovchansk"}),
    ("places: [{lat: 50.45, lon: 30.52, radius_km: 20}]", {"kyiv"}),
    ("actors: [russian armed forces]", {"kharkiv"}),
    ("event_types: [battle, drone_strike]", {"vovchansk", "kyiv"}),
    ("language: uk", {"kyiv"}),
    ("language: [uk, en]", {"kharkiv", "vovchansk", "kyiv"}),  # was the text '{uk,en}', which matched nothing
    ("sources: [files]\n  query: battle", {"vovchansk"}),
    ("sources: [somewhere-else]", set()),
])
def test_a_rule_matches_the_reports_that_meet_every_condition_it_sets(conn, tmp_path, rule, expected):
    ids = dict(zip([r["key"] for r in REPORTS], load_reports(conn, *REPORTS), strict=True))
    alerts.sync_rules(conn, _rules(tmp_path, f"rules:\n- name: r\n  {rule}\n"))

    alerts.evaluate(conn, threshold=0.5)

    matched = {report_id for (ids_,) in conn.execute("SELECT report_ids FROM alerts") for report_id in ids_}
    assert matched == {ids[k] for k in expected}


def test_one_alert_per_rule_per_story_and_each_report_is_evaluated_once(conn, tmp_path):
    alerts.sync_rules(conn, _rules(tmp_path, "rules: [{name: r, query: shelling, webhooks: ['http://127.0.0.1:9/x']}]"))
    first, = load_reports(conn, REPORTS[0])
    assert len(alerts.evaluate(conn, threshold=0.5)) == 1
    # A syndicated copy arrives later and joins the same story.
    copy, = load_reports(conn, {**REPORTS[0], "key": "copy", "text": REPORTS[0]["text"] + " (wire copy)"})
    conn.execute("UPDATE reports SET story_id = (SELECT story_id FROM reports WHERE report_id = %s)"
                 " WHERE report_id = %s", (first, copy))
    conn.commit()

    assert alerts.evaluate(conn, threshold=0.5) == []
    assert alerts.evaluate(conn, threshold=0.5) == []

    rows = conn.execute("SELECT report_id, report_ids FROM alerts").fetchall()
    assert rows == [(first, [first, copy])]
    assert conn.execute("SELECT count(*) FROM alert_deliveries").fetchone()[0] == 1


def test_every_new_alert_is_notified_on_the_documented_channel(conn, db_url, tmp_path):
    alerts.sync_rules(conn, _rules(tmp_path, "rules: [{name: notify-me, query: shelling}]"))
    load_reports(conn, *REPORTS)
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {alerts.CHANNEL}")

        created = alerts.evaluate(conn, threshold=0.5)

        select.select([listener.fileno()], [], [], 10)
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=1, stop_after=len(created))]
    assert sorted(p["alert_id"] for p in payloads) == sorted(created) and len(created) == 2
    assert {p["rule"] for p in payloads} == {"notify-me"}


# ---------------------------------------------------------------------------------------- delivery


def test_the_seed_sample_rule_delivers_exactly_one_signed_alert(conn, settings, fast, receiver):
    rules = [r for r in alerts.load_rules(PROJECT_ROOT / "seeds" / "alert_rules.yaml") if r.name == "bakhmut-battle"]
    alerts.sync_rules(conn, rules)
    pipeline.ingest_files(settings, sorted((PROJECT_ROOT / "seeds" / "samples").glob("*.txt")))

    alerts.evaluate(conn, threshold=0.5)
    result = alerts.deliver(conn, fast)
    alerts.evaluate(conn, threshold=0.5)
    again = alerts.deliver(conn, fast)

    assert (result.delivered, again.delivered) == (1, 0)
    (hit,) = receiver.received
    assert hit.path == "/hooks/bakhmut" and hit.signature_valid is True
    body = hit.json
    assert body["rule"] == "bakhmut-battle" and "Bakhmut" in body["report"]["summary"]
    assert hit.headers["x-sitrep-delivery"] == str(body["delivery_id"])
    assert not alerts.verify_signature("wrong-secret", hit.body, hit.headers["x-sitrep-signature"])
    assert not alerts.verify_signature(SECRET, hit.body + b" ", hit.headers["x-sitrep-signature"])


def test_a_webhook_that_fails_twice_then_succeeds_delivers_once(conn, fast, receiver, tmp_path):
    receiver.fail("/flaky", [500, 503])
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: ['{receiver.url('/flaky')}']}}]"))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)

    result = alerts.deliver(conn, fast)

    assert (result.delivered, result.failed, result.dead) == (1, 2, 0)
    assert [r.status for r in receiver.received] == [500, 503, 200]
    assert len(receiver.delivered()) == 1
    assert len({r.headers["x-sitrep-delivery"] for r in receiver.received}) == 1  # one delivery id to dedupe on
    row = conn.execute("SELECT status, attempts, last_error FROM alert_deliveries").fetchone()
    assert row == ("delivered", 3, None)


def test_an_always_failing_webhook_ends_in_dead_letter_without_blocking_the_others(conn, fast, receiver, tmp_path,
                                                                                     settings_env, capsys):
    receiver.fail("/down", always=503)
    alerts.sync_rules(conn, _rules(tmp_path, f"""
rules:
  - {{name: broken, query: shelling, webhooks: ['{receiver.url('/down')}']}}
  - {{name: fine, query: shelling, webhooks: [{{url: '{receiver.url('/ok')}', format: slack}}]}}
"""))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)

    result = alerts.deliver(conn, fast)

    assert (result.delivered, result.dead) == (1, 1)
    assert receiver.delivered("/ok")[0].json["text"].startswith("*sitrep alert* `fine`")
    assert [r.status for r in receiver.received if r.path == "/down"] == [503, 503, 503]
    dead = conn.execute("SELECT url, attempts, last_status, last_error FROM alert_dead_letters").fetchone()
    assert dead[:3] == (receiver.url("/down"), 3, 503) and "HTTP 503" in dead[3]
    conn.commit()

    assert main(["alerts", "list", "--dead"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "HTTP 503" in out
    receiver.fail("/down", always=200)  # the receiver is fixed: replay the dead letters
    assert main(["alerts", "retry", "--all"]) == 0
    out = capsys.readouterr().out
    assert "1 dead letter(s) replayed: 1 delivered" in out
    # and it says so, so that a URL fixed in the rules file is not expected to be used (it was not)
    assert "as the sitrep_alerts DAG last synced them: to replay to a URL just fixed" in out
    assert len(receiver.delivered("/down")) == 1
    assert conn.execute("SELECT count(*) FROM alert_dead_letters").fetchone()[0] == 0
    # No SITREP_ALERT_RULES here: the replay read no rules file (the default one would have replaced the
    # DAG's rules until its next run).
    assert dict(conn.execute("SELECT name, enabled FROM alert_rules").fetchall()) == {"broken": True, "fine": True}


def test_replaying_after_fixing_a_webhooks_url_in_the_rules_file_sends_to_the_fixed_url(conn, fast, receiver, tmp_path,
                                                                                         settings_env, monkeypatch, capsys):
    # Each delivery kept the URL it was queued with: after fixing a typo in the rules file and
    # `sitrep alerts retry --all` (as the DAG's doc says), the alert went to the typo again and died again.
    receiver.fail("/hooks/kharkv", always=404)
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"rules: [{{name: r, query: shelling, webhooks: ['{receiver.url('/hooks/kharkv')}', "
                     f"'{receiver.url('/hooks/other')}']}}]")
    monkeypatch.setenv("SITREP_ALERT_RULES", str(rules))
    alerts.sync_rules(conn, alerts.load_rules(rules))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)
    assert alerts.deliver(conn, fast).dead == 1
    conn.commit()
    rules.write_text(rules.read_text().replace("/hooks/kharkv", "/hooks/kharkiv"))  # the typo fixed

    assert main(["alerts", "retry", "--all"]) == 0

    assert "1 dead letter(s) replayed: 1 delivered" in capsys.readouterr().out
    assert len(receiver.delivered("/hooks/kharkiv")) == 1 and len(receiver.delivered("/hooks/other")) == 1
    assert [r.path for r in receiver.received].count("/hooks/kharkv") == 3  # never again after the fix


def test_a_missing_signing_secret_fails_the_delivery_with_what_to_do(conn, fast, receiver, tmp_path, monkeypatch):
    monkeypatch.delenv("SITREP_WEBHOOK_SECRET")
    hook = f"{{url: '{receiver.url('/signed')}', secret_env: SITREP_WEBHOOK_SECRET}}"
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: [{hook}]}}]"))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)

    result = alerts.deliver(conn, fast)

    assert result.dead == 1 and receiver.received == []
    error = conn.execute("SELECT last_error FROM alert_dead_letters").fetchone()[0]
    assert "SITREP_WEBHOOK_SECRET is not set" in error


def test_a_delivery_to_a_url_httpx_cannot_build_is_a_failed_attempt_not_a_failed_run(conn, fast, receiver, tmp_path):
    # Queued before its rule was fixed (the rules file refuses such a URL now): it used to raise out of
    # deliver() on every run (IDNAError is no httpx.HTTPError), and every delivery after it waited forever.
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: ['{receiver.url('/ok')}']}}]"))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)
    [alert_id] = conn.execute("SELECT alert_id FROM alert_deliveries").fetchone()
    conn.execute("INSERT INTO alert_deliveries (alert_id, url, format, next_attempt_at)"
                 " VALUES (%s, 'http://xn--/hook', 'json', now() - interval '1 hour')", (alert_id,))
    conn.commit()

    for _ in range(3):
        alerts.deliver(conn, fast)  # must not raise

    statuses = dict(conn.execute("SELECT url, status FROM alert_deliveries").fetchall())
    assert statuses == {receiver.url("/ok"): "delivered", "http://xn--/hook": "dead"}
    [error] = conn.execute("SELECT last_error FROM alert_dead_letters").fetchone()
    assert "IDNAError" in error and len(receiver.received) == 1


def test_the_ssrf_guard_applies_to_webhooks_unless_private_hosts_are_allowed(conn, fast, receiver, tmp_path):
    guarded = replace(fast, fetch=replace(fast.fetch, allow_private_hosts=False))
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: ['{receiver.url('/x')}']}}]"))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)

    result = alerts.deliver(conn, guarded)

    assert result.dead == 1 and receiver.received == []
    assert "not a public address" in conn.execute("SELECT last_error FROM alert_dead_letters").fetchone()[0]



def _answering(site, path: str, write) -> str:  # type: ignore[no-untyped-def]
    def handle(h):  # type: ignore[no-untyped-def]
        h.rfile.read(int(h.headers.get("Content-Length", 0)))
        try:
            write(h.wfile)
        except OSError:
            return
        h.close_connection = True

    return site.add(path, handler=handle)


def test_a_webhook_reply_is_read_no_further_than_it_is_quoted(site, fast):
    # A 500 whose reply runs to 50 MB: httpx's post() held all of it to quote 200 characters.
    def huge(out):  # type: ignore[no-untyped-def]
        out.write(b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        junk = b"x" * (1024 * 1024)
        for _ in range(50):
            out.write(b"%x\r\n%s\r\n" % (len(junk), junk))
        out.write(b"0\r\n\r\n")

    url = _answering(site, "/hook", huge)
    policy = AddressPolicy.build(allow_private=True)
    tracemalloc.start()
    try:
        with alerts._client(fast, policy) as client:
            status, error = alerts._post(client, policy, url, "json", None, 1, {"rule": "r"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 500 and error == "HTTP 500: " + "x" * 200
    assert peak < 8 * 1024 * 1024


def test_a_webhook_answering_a_byte_at_a_time_is_cut_at_the_delivery_timeout(site, fast):
    def headers_drip(out):  # type: ignore[no-untyped-def]  # a minute, then it hangs up mid-headers
        drip(out, b"HTTP/1.1 200 OK\r\nX-Slow: ", times=200, every=0.3)

    url = _answering(site, "/hook", headers_drip)
    settings = replace(fast, downstream=replace(fast.downstream, delivery_timeout=1.0))
    policy = AddressPolicy.build(allow_private=True)
    with alerts._client(settings, policy) as client:
        status, error = alerts._post(client, policy, url, "json", None, 1, {"rule": "r"})
    assert status is None and error is not None and "Timeout" in error


def test_a_slack_message_shows_a_hostile_title_as_text():
    # A page's title and summary are the page's: unescaped, "<!channel>" pinged everyone and
    # "<https://evil.example|https://sso.example>" showed one URL over another.
    report = {"url": "https://news.example/a?x=1&y=2", "source": "Gazette & Co",
              "title": "Shelling <!channel> re-authenticate at <https://evil.example/login|https://sso.example>",
              "summary": "Two killed <!here> & more"}
    body = json.loads(alerts._body("slack", 1, {"rule": "kharkiv", "report": report}))
    text = body["text"] + body["blocks"][1]["elements"][0]["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "Gazette &amp; Co" in text
    assert text.startswith("*sitrep alert* `kharkiv`: <https://news.example/a?x=1&amp;y=2|Shelling &lt;!channel&gt;")


def test_a_delivery_waiting_past_the_budget_is_left_for_the_next_run(conn, settings, receiver, tmp_path):
    # The delivery task is bounded (SITREP_DELIVERY_BUDGET): a webhook failing with a backoff longer than
    # what is left of the budget waits in the table, pending, for the next run, instead of the task.
    receiver.fail("/down", always=503)
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: ['{receiver.url('/down')}']}}]"))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)
    slow = replace(settings, downstream=DownstreamSettings(delivery_attempts=3, delivery_backoff=30, delivery_timeout=5))

    result = alerts.deliver(conn, slow, budget=0.5)

    assert (result.delivered, result.dead, result.pending) == (0, 0, 1)
    assert conn.execute("SELECT status, attempts FROM alert_deliveries").fetchone() == ("pending", 1)
    assert len(receiver.received) == 1


class _Silent:
    """A webhook host that accepts connections and never answers: each attempt waits out the timeout."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.accepted.append(self.server.accept()[0])
            except OSError:
                return

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}{path}"

    def close(self) -> None:
        self.server.close()
        for peer in self.accepted:
            peer.close()


def test_a_webhook_that_hangs_costs_one_timeout_per_round_and_the_others_go_out(conn, settings, receiver, tmp_path):
    # Eight alerts to a host that never answers and to a healthy one: before, each round waited out the
    # timeout eight times (8 s past a 2 s budget) and the healthy deliveries queued behind them.
    silent = _Silent()
    hang = silent.url("/h")
    hooks = f"['{hang}', '{receiver.url('/ok')}']"
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: {hooks}}}]"))
    load_reports(conn, *[{"key": f"s{i}", "title": "Shelling", "text": f"shelling {i} " + paragraph(f"s{i}"),
                          "relevance": 0.9} for i in range(8)])
    assert len(alerts.evaluate(conn, threshold=0.5)) == 8
    hanging = replace(settings, downstream=DownstreamSettings(delivery_attempts=5, delivery_backoff=2,
                                                              delivery_timeout=1, delivery_budget=2))
    try:
        result = alerts.deliver(conn, hanging)
    finally:
        silent.close()

    assert len(receiver.delivered("/ok")) == result.delivered == 8
    tried = conn.execute("SELECT sum(attempts) FROM alert_deliveries WHERE url = %s", (hang,)).fetchone()[0]
    assert 1 <= tried == len(silent.accepted) <= 2 and result.pending == 8


def test_a_webhooks_secret_url_reaches_no_log_and_no_listing(conn, fast, receiver, tmp_path, caplog, capsys,
                                                              settings_env):
    # Slack's webhooks carry their secret in the path: anyone who reads a task log or `alerts list`
    # could post to the channel.
    token = "T000/B000/XyZsecretTOKEN1234567890"
    receiver.fail(f"/services/{token}", always=200)
    hook = f"{{url: '{receiver.url(f'/services/{token}')}', format: slack}}"
    alerts.sync_rules(conn, _rules(tmp_path, f"rules: [{{name: r, query: shelling, webhooks: [{hook}]}}]"))
    load_reports(conn, REPORTS[0])
    alerts.evaluate(conn, threshold=0.5)
    with caplog.at_level("DEBUG"):
        assert alerts.deliver(conn, fast).delivered == 1
    conn.commit()
    assert main(["alerts", "list"]) == 0
    assert "XyZsecretTOKEN" not in caplog.text + capsys.readouterr().out
    assert "delivered to http://127.0.0.1:" in caplog.text  # the host is still named
    assert alerts.shown_url("https://hooks.example:99999/T0/secret") == "https://hooks.example:99999/…"  # shown, not parsed


def test_rules_synced_before_0013_keep_their_one_language(pg_server, tmp_path):
    url, folder = empty_database(pg_server, tmp_path)
    (folder / "migrations" / "0013_alert_rule_languages.sql").unlink()
    with db.connect(url) as conn:
        db.migrate(conn, folder)
        conn.execute("INSERT INTO alert_rules (name, language, query, definition)"
                     " VALUES ('uk', 'uk', 'x', '{}'), ('any', NULL, 'y', '{}'), ('list', '{uk,en}', 'z', '{}')")
        conn.commit()
        assert db.migrate(conn) == ["0013_alert_rule_languages.sql"]
        assert conn.execute("SELECT name, language FROM alert_rules ORDER BY name").fetchall() == [("any", []), ("list", ["uk", "en"]), ("uk", ["uk"])]


def test_a_payloads_times_are_utc_whatever_the_servers_time_zone(db_url, conn):
    # A server (or database) in Asia/Kolkata sent published_at as 2024-06-03T05:30:00+05:30 beside a
    # created_at in UTC; the contract says UTC.
    name = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(f"ALTER DATABASE {name} SET TimeZone = 'Asia/Kolkata'")
    conn.commit()
    with db.connect(db_url) as fresh:
        (report_id,) = load_reports(fresh, REPORTS[0])
        payload = alerts._payload(fresh, "r", report_id)
    assert payload["report"]["published_at"] == "2024-06-03T00:00:00+00:00"
