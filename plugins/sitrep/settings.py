"""Every knob of sitrep, read once from the environment, with the default beside it.

Usage::

    from sitrep.settings import Settings
    settings = Settings.from_env()
    settings.fetch.max_page_bytes

Each setting is an environment variable ``SITREP_<NAME>``; the table in README.md lists them. Values are
small frozen dataclasses (the httpx way) so that a stage receives only the part it needs and a test can
build one with ``dataclasses.replace``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from sitrep.errors import ConfigError

#: The project root: plugins/sitrep/settings.py -> the checkout.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_USER_AGENT = "sitrep/0.1 (+https://github.com/sitrep-news/sitrep; conflict-news ingestion)"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 20.0
DEFAULT_TOTAL_TIMEOUT = 60.0
DEFAULT_MAX_PAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_FEED_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_PER_HOST_CONCURRENCY = 2
DEFAULT_PER_HOST_DELAY = 1.0
DEFAULT_GLOBAL_CONCURRENCY = 32
DEFAULT_RETRIES = 2
DEFAULT_BATCH_SOURCES = 25
DEFAULT_MAX_RETRY_WAIT = 10.0
DEFAULT_MAX_DECOMPRESSION_RATIO = 200
DEFAULT_MAX_BACKOFF_MINUTES = 720.0
DEFAULT_MAX_FAILURES = 10
DEFAULT_REVALIDATE_AFTER_HOURS = 24.0
DEFAULT_STALE_FACTOR = 4.0
DEFAULT_STALE_MIN_HOURS = 6.0
DEFAULT_FEED_PARSE_TIMEOUT = 120.0
DEFAULT_MAX_FEED_ENTRIES = 10_000
DEFAULT_COLLECT_BUDGET = 600.0
DEFAULT_POLL_BUDGET = 300.0
DEFAULT_STATEMENT_TIMEOUT_MS = 120_000
DEFAULT_TASK_RETRIES = 3
#: Reports at or above this relevance are conflict reporting for the alerting and export DAGs (see enrich.py).
DEFAULT_RELEVANCE_THRESHOLD = 0.5


def _env(name: str, default: str) -> str:
    """SITREP_<name>, or the default when it is unset or blank: compose's ``${VAR:-}`` passes an empty
    value, and an empty SITREP_RESPECT_ROBOTS turned robots.txt off."""
    value = os.environ.get(f"SITREP_{name}", "")
    return value if value.strip() else default


def _fraction(name: str, default: float) -> float:
    value = _number(name, default)
    if value > 1:
        raise ConfigError(f"SITREP_{name}={value} must be between 0 and 1, e.g. {default}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = _env(name, "1" if default else "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"SITREP_{name}={raw!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def _number(name: str, default: float, cast: type = float, *, positive: bool = False, most: float | None = None) -> float:
    """SITREP_<name> as a finite number, not negative (``positive``: more than 0; ``most``: a bound)."""
    raw = _env(name, str(default))
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"SITREP_{name}={raw!r} is not a number: set it to e.g. {default}") from None
    if not math.isfinite(value):
        raise ConfigError(f"SITREP_{name}={raw!r} must be a finite number, e.g. {default}")
    if positive and value <= 0:
        raise ConfigError(f"SITREP_{name}={raw!r} must be more than 0, e.g. {default}")
    if value < 0:
        raise ConfigError(f"SITREP_{name}={raw!r} must not be negative")
    if most is not None and value > most:
        raise ConfigError(f"SITREP_{name}={raw!r} must be at most {most:g}, e.g. {default}")
    return float(value)


def number_setting(name: str, default: float, cast: type = float, *, positive: bool = False) -> float:
    """SITREP_<name> checked as every setting is (a bad one is one ConfigError line), for the settings
    that live beside the code they bound (the extraction workers' limits)."""
    return _number(name, default, cast, positive=positive)


def port_number(value: object) -> int | None:
    """A TCP port (1-65535) written as digits, or None. ASCII digits only: str.isdigit() takes "²",
    which int() then refuses with a traceback."""
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number < 65536 else None


def task_retries() -> int:
    """SITREP_TASK_RETRIES: retries of a failed ingestion task, read by the DAG file when it is parsed."""
    return int(_number("TASK_RETRIES", DEFAULT_TASK_RETRIES, int, most=100))


DEFAULT_SCHEDULE = "*/10 * * * *"
_PRESETS = frozenset({"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly",
                      "@annually", "@midnight"})  # what Airflow takes besides cron


def ingest_schedule() -> str:
    """SITREP_SCHEDULE: the ingestion DAG's cron expression or preset, read by the DAG file when it is parsed.

    Checked here, so that a mistake is one line naming the variable (in the DAG's import error and before
    `sitrep ingest` starts Airflow), not croniter's traceback in a task log.
    """
    value = _env("SCHEDULE", DEFAULT_SCHEDULE).strip()
    from croniter import croniter

    if value not in _PRESETS and not croniter.is_valid(value):
        raise ConfigError(f"SITREP_SCHEDULE={value!r} is not a schedule: give a cron expression such as"
                          f" '{DEFAULT_SCHEDULE}' (every 10 minutes) or a preset such as @hourly")
    return value


@dataclass(frozen=True)
class FetchSettings:
    """How we talk to the open web: politely, with every size and time bounded."""

    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    max_feed_bytes: int = DEFAULT_MAX_FEED_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    per_host_concurrency: int = DEFAULT_PER_HOST_CONCURRENCY
    per_host_delay: float = DEFAULT_PER_HOST_DELAY
    global_concurrency: int = DEFAULT_GLOBAL_CONCURRENCY
    retries: int = DEFAULT_RETRIES
    #: Off in production: loopback, private and link-local addresses are refused (SSRF guard).
    allow_private_hosts: bool = False
    respect_robots: bool = True
    #: "host:port" pairs let past the SSRF guard even when it is on (tests: one loopback server only).
    allowed_hosts: tuple[str, ...] = ()
    #: Longest Retry-After we sleep through inside a task; a longer one pushes the next poll back instead.
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    #: Decoded bytes per transferred byte above which a compressed body is refused as a bomb.
    max_decompression_ratio: int = DEFAULT_MAX_DECOMPRESSION_RATIO
    #: Failing feeds back off exponentially (with jitter) up to this many minutes between polls.
    max_backoff_minutes: float = DEFAULT_MAX_BACKOFF_MINUTES
    #: A feed is disabled (reason recorded) after this many consecutive failed polls; 0 never disables.
    max_failures: int = DEFAULT_MAX_FAILURES
    #: After this long with nothing new, poll once without validators to catch servers that lie with 304.
    revalidate_after_hours: float = DEFAULT_REVALIDATE_AFTER_HOURS
    #: A feed is stale when silent for this many times its usual gap between entries (and at least stale_min_hours).
    stale_factor: float = DEFAULT_STALE_FACTOR
    stale_min_hours: float = DEFAULT_STALE_MIN_HOURS
    #: Seconds a feed's parse may take (in a child process, stopped past it): feedparser's time grows
    #: with the square of some hostile inputs. A 10,000-entry feed parses in well under a minute.
    feed_parse_timeout: float = DEFAULT_FEED_PARSE_TIMEOUT
    #: Entries recorded from one poll of a feed, the newest first: a 20 MB feed of bare links holds some
    #: 400,000, every one a page to fetch, anywhere on the web. The rest are counted as over_limit.
    max_feed_entries: int = DEFAULT_MAX_FEED_ENTRIES
    #: Seconds after its start a collect starts no more requests; the pages left stay pending for the next
    #: run (a host's Crawl-delay times its pages must not hold the run, and every run behind it, for hours).
    collect_budget: float = DEFAULT_COLLECT_BUDGET
    #: The same for a poll task: feeds not reached are polled by the next run (a host that answers a byte
    #: at a time held a batch of 25 feeds for feeds x tries x total timeout, some 38 minutes).
    poll_budget: float = DEFAULT_POLL_BUDGET

    @classmethod
    def from_env(cls) -> FetchSettings:
        return cls(
            user_agent=_env("USER_AGENT", DEFAULT_USER_AGENT),
            connect_timeout=_number("CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, positive=True),
            read_timeout=_number("READ_TIMEOUT", DEFAULT_READ_TIMEOUT, positive=True),
            total_timeout=_number("TOTAL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT, positive=True),
            max_page_bytes=int(_number("MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES, int, positive=True)),
            max_feed_bytes=int(_number("MAX_FEED_BYTES", DEFAULT_MAX_FEED_BYTES, int, positive=True)),
            max_redirects=int(_number("MAX_REDIRECTS", DEFAULT_MAX_REDIRECTS, int)),
            per_host_concurrency=max(1, int(_number("PER_HOST_CONCURRENCY", DEFAULT_PER_HOST_CONCURRENCY, int))),
            per_host_delay=_number("PER_HOST_DELAY", DEFAULT_PER_HOST_DELAY),
            global_concurrency=max(1, int(_number("GLOBAL_CONCURRENCY", DEFAULT_GLOBAL_CONCURRENCY, int))),
            retries=int(_number("RETRIES", DEFAULT_RETRIES, int)),
            allow_private_hosts=_bool("ALLOW_PRIVATE_HOSTS", False),
            respect_robots=_bool("RESPECT_ROBOTS", True),
            allowed_hosts=tuple(h.strip() for h in _env("ALLOWED_HOSTS", "").split(",") if h.strip()),
            max_retry_wait=_number("MAX_RETRY_WAIT", DEFAULT_MAX_RETRY_WAIT),
            max_decompression_ratio=int(_number("MAX_DECOMPRESSION_RATIO", DEFAULT_MAX_DECOMPRESSION_RATIO, int, positive=True)),
            max_backoff_minutes=_number("MAX_BACKOFF_MINUTES", DEFAULT_MAX_BACKOFF_MINUTES),
            max_failures=int(_number("MAX_FAILURES", DEFAULT_MAX_FAILURES, int)),
            revalidate_after_hours=_number("REVALIDATE_AFTER_HOURS", DEFAULT_REVALIDATE_AFTER_HOURS),
            stale_factor=_number("STALE_FACTOR", DEFAULT_STALE_FACTOR),
            stale_min_hours=_number("STALE_MIN_HOURS", DEFAULT_STALE_MIN_HOURS),
            feed_parse_timeout=_number("FEED_PARSE_TIMEOUT", DEFAULT_FEED_PARSE_TIMEOUT, positive=True),
            max_feed_entries=int(_number("MAX_FEED_ENTRIES", DEFAULT_MAX_FEED_ENTRIES, int, positive=True)),
            collect_budget=_number("COLLECT_BUDGET", DEFAULT_COLLECT_BUDGET, positive=True),
            poll_budget=_number("POLL_BUDGET", DEFAULT_POLL_BUDGET, positive=True),
        )


@dataclass(frozen=True)
class DownstreamSettings:
    """The consumers of reports_v1: the warehouse export (Parquet) and the alert webhooks.

    ``export_path`` is a local folder or any fsspec URL (``s3://bucket/sitrep``); None means
    ``<SITREP_HOME>/export``. Webhook secrets are never here: a rule names the environment variable
    that holds its secret (``secret_env``, e.g. ``SITREP_WEBHOOK_SECRET``), read at delivery time; a
    webhook without one is posted unsigned.
    """

    export_path: str | None = None
    #: Rows per export file set (one manifest each): bounds the memory of one export step.
    export_batch_rows: int = 20_000
    alert_rules_file: Path = PROJECT_ROOT / "seeds" / "alert_rules.yaml"
    #: Attempts per webhook delivery before it goes to dead-letter; waits double from the first.
    delivery_attempts: int = 5
    delivery_backoff: float = 2.0
    delivery_timeout: float = 10.0
    #: How long one delivery step keeps retrying before it leaves the rest for the next run.
    delivery_budget: float = 120.0

    @classmethod
    def from_env(cls) -> DownstreamSettings:
        return cls(
            export_path=_env("EXPORT_PATH", "") or None,
            export_batch_rows=max(1, int(_number("EXPORT_BATCH_ROWS", cls.export_batch_rows, int))),
            alert_rules_file=Path(_env("ALERT_RULES", str(cls.alert_rules_file))).expanduser(),
            delivery_attempts=max(1, int(_number("DELIVERY_ATTEMPTS", cls.delivery_attempts, int))),
            delivery_backoff=_number("DELIVERY_BACKOFF", cls.delivery_backoff),
            delivery_timeout=_number("DELIVERY_TIMEOUT", cls.delivery_timeout, positive=True),
            delivery_budget=_number("DELIVERY_BUDGET", cls.delivery_budget, positive=True),
        )


@dataclass(frozen=True)
class DedupSettings:
    """When a near-duplicate candidate (MinHash-LSH, see sitrep.dedup) is the same article.

    Tuned on bench/dedup.py (syndicated variants vs. same-town, same-day distinct articles) and on the
    demo corpus, whose syndicated copies score 0.70-0.94 and distinct same-topic pairs below 0.01.
    """

    #: Exact word-5-shingle Jaccard at or above which two texts are one article.
    jaccard: float = 0.5
    #: Or: share of the shorter text's shingles found in the longer one (a copy cut down to its lede,
    #: with a dateline and a footer of its own). Distinct same-topic articles stay below 0.4.
    containment: float = 0.65
    #: The containment rule only applies when the shorter text has at least this many shingles.
    min_shingles: int = 25
    #: A changed text under a declared (rel=canonical) URL is a revision of the report only if this
    #: share of the shorter text's shingles is shared; else the site points many pages at one URL, and
    #: the page keeps its own URL as its canonical.
    revision_overlap: float = 0.2
    #: Near-duplicate candidates are verified only when published (or, without a date, fetched) within
    #: this many days of each other: a story's copies appear within days, and the work of a load stays
    #: bounded as the index grows. 0: no window (every candidate the LSH index returns is verified).
    window_days: float = 7.0

    @classmethod
    def from_env(cls) -> DedupSettings:
        return cls(
            jaccard=_fraction("DEDUP_JACCARD", cls.jaccard),
            containment=_fraction("DEDUP_CONTAINMENT", cls.containment),
            min_shingles=int(_number("DEDUP_MIN_SHINGLES", cls.min_shingles, int)),
            revision_overlap=_fraction("DEDUP_REVISION_OVERLAP", cls.revision_overlap),
            window_days=_number("DEDUP_WINDOW_DAYS", cls.window_days),
        )


@dataclass(frozen=True)
class ExtractSettings:
    """trafilatura's options for article text (SITREP_EXTRACT_*), chosen on bench/extraction.py.

    Reader comments are not the article (a bare trafilatura.extract keeps them); the other switches
    trade quality for speed and are measured side by side in the benchmark's table.
    """

    #: fast + favor_precision: the best F1 on the labelled set (with balanced and fast alone) and the
    #: least boilerplate on the demo corpus, in about 60% of the balanced mode's time (it skips the
    #: readability/justext comparison and the page-coverage check). When the text is short (below
    #: min_words, or below 60% of the feed's content:encoded) the chain runs the balanced mode, then
    #: the recall mode (sitrep.extract), so a page the strict mode under-reads is read again.
    fast: bool = True
    favor_precision: bool = True
    #: Off: it kept "more from" teasers, sidebars and footers on div-based layouts (demo corpus: +300 words).
    favor_recall: bool = False
    include_tables: bool = True
    #: Reader comments after the article's text (SITREP_EXTRACT_INCLUDE_COMMENTS=1); off: a report is the article.
    include_comments: bool = False
    #: Fewer words than this and the next step of the fallback chain is tried (see sitrep.extract).
    min_words: int = 40

    @classmethod
    def from_env(cls) -> ExtractSettings:
        return cls(
            fast=_bool("EXTRACT_FAST", cls.fast),
            favor_precision=_bool("EXTRACT_FAVOR_PRECISION", cls.favor_precision),
            favor_recall=_bool("EXTRACT_FAVOR_RECALL", cls.favor_recall),
            include_tables=_bool("EXTRACT_INCLUDE_TABLES", cls.include_tables),
            include_comments=_bool("EXTRACT_INCLUDE_COMMENTS", cls.include_comments),
            min_words=int(_number("EXTRACT_MIN_WORDS", cls.min_words, int)),
        )


@dataclass(frozen=True)
class Settings:
    """The whole configuration. ``database_url`` is None when sitrep runs its own embedded PostgreSQL."""

    database_url: str | None = None
    home: Path = PROJECT_ROOT / ".sitrep"
    fetch: FetchSettings = field(default_factory=FetchSettings)
    #: Sources per mapped batch task: large enough to amortise Airflow's per-task overhead.
    batch_sources: int = DEFAULT_BATCH_SOURCES
    #: Processes for extraction inside one batch task; 0 means one per core.
    workers: int = 0
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS
    #: SITREP_TASK_RETRIES: retries of a failed ingestion task (read again by the DAG file: task_retries()).
    task_retries: int = DEFAULT_TASK_RETRIES
    #: Near-duplicate thresholds (story clusters).
    dedup: DedupSettings = field(default_factory=DedupSettings)
    downstream: DownstreamSettings = field(default_factory=DownstreamSettings)
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    #: SITREP_RELEVANCE_THRESHOLD: downstream DAGs treat reports at or above it as conflict reporting;
    #: nothing is dropped at load.
    relevance_threshold: float = DEFAULT_RELEVANCE_THRESHOLD

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(_env("HOME", str(PROJECT_ROOT / ".sitrep"))).expanduser().resolve()  # tools run from other folders
        if home.exists() and not home.is_dir():
            raise ConfigError(f"SITREP_HOME {home} is a file, not a folder: point it at a folder (or one to create)")
        url = os.environ.get("SITREP_DATABASE_URL") or None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                "SITREP_DATABASE_URL must be a libpq URL such as postgresql://user@host:5432/sitrep"
            )
        return cls(
            database_url=url,
            home=home,
            fetch=FetchSettings.from_env(),
            batch_sources=max(1, int(_number("BATCH_SOURCES", DEFAULT_BATCH_SOURCES, int))),
            workers=int(_number("WORKERS", 0, int)),
            statement_timeout_ms=int(_number("STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS, int, most=2**31 - 1)),
            task_retries=task_retries(),
            dedup=DedupSettings.from_env(),
            downstream=DownstreamSettings.from_env(),
            extract=ExtractSettings.from_env(),
            relevance_threshold=_fraction("RELEVANCE_THRESHOLD", DEFAULT_RELEVANCE_THRESHOLD),
        )

    @property
    def worker_count(self) -> int:
        return self.workers or (os.cpu_count() or 1)
