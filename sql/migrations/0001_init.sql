-- sitrep 0001: sources, feed entries, raw pages, staged and loaded reports, stories.
-- Uniqueness lives in constraints (ON CONFLICT), never in read-then-insert code.

CREATE TABLE sources (
    source_id            bigserial PRIMARY KEY,
    kind                 text        NOT NULL DEFAULT 'feed' CHECK (kind IN ('feed', 'files')),
    name                 text        NOT NULL,
    feed_url             text        NOT NULL UNIQUE,
    host                 text        NOT NULL,
    enabled              boolean     NOT NULL DEFAULT true,
    added_at             timestamptz NOT NULL DEFAULT now(),
    poll_interval        interval    NOT NULL DEFAULT interval '10 minutes',
    next_poll_at         timestamptz NOT NULL DEFAULT now(),
    last_polled_at       timestamptz,
    last_status          integer,
    last_error           text,
    consecutive_failures integer     NOT NULL DEFAULT 0,
    disabled_reason      text,
    etag                 text,
    last_modified        text,
    body_sha256          text,
    validators_trusted   boolean     NOT NULL DEFAULT true,
    last_new_entry_at    timestamptz,
    entries_seen         bigint      NOT NULL DEFAULT 0
);

-- One row per feed entry ever seen: an entry is fetched until it is loaded, failed for good or skipped.
CREATE TABLE entries (
    entry_id     bigserial PRIMARY KEY,
    source_id    bigint      NOT NULL REFERENCES sources ON DELETE CASCADE,
    entry_key    text        NOT NULL,          -- the GUID, else the canonical link
    link         text,
    title        text,
    summary      text,
    content      text,
    author       text,
    published_at timestamptz,
    seen_at      timestamptz NOT NULL DEFAULT now(),
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'loaded', 'duplicate', 'failed', 'skipped')),
    attempts     integer     NOT NULL DEFAULT 0,
    error        text,
    report_id    bigint,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source_id, entry_key)
);
CREATE INDEX entries_pending_idx ON entries (source_id) WHERE status = 'pending';

-- The raw page as fetched (zlib), so that reports can be re-extracted without fetching again.
CREATE TABLE pages (
    page_id      bigserial PRIMARY KEY,
    entry_id     bigint      NOT NULL UNIQUE REFERENCES entries ON DELETE CASCADE,
    url          text        NOT NULL,
    final_url    text        NOT NULL,
    http_status  integer,
    content_type text,
    fetched_at   timestamptz NOT NULL,
    body_sha256  text        NOT NULL,
    body_size    integer     NOT NULL,
    body_zlib    bytea       NOT NULL
);

CREATE SEQUENCE ingest_seq AS bigint;

CREATE TABLE stories (
    story_id          bigserial PRIMARY KEY,
    representative_id bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reports (
    report_id           bigserial PRIMARY KEY,
    source_id           bigint      NOT NULL REFERENCES sources,
    entry_id            bigint      REFERENCES entries ON DELETE SET NULL,
    page_id             bigint      REFERENCES pages ON DELETE SET NULL,
    story_id            bigint      REFERENCES stories,
    duplicate_of        bigint      REFERENCES reports,
    url                 text        NOT NULL,
    canonical_url       text        NOT NULL,
    title               text,
    authors             text[]      NOT NULL DEFAULT '{}',
    published_at        timestamptz,
    published_at_source text        CHECK (published_at_source IN ('article', 'feed', 'url', 'fetched')),
    fetched_at          timestamptz,
    ingested_at         timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    revision            integer     NOT NULL DEFAULT 1,
    -- Assigned under the load lock so that it commits in order: a safe watermark for readers.
    ingest_seq          bigint      NOT NULL DEFAULT nextval('ingest_seq') UNIQUE,
    language            text,
    text                text        NOT NULL CHECK (text <> ''),
    summary             text       ,
    word_count          integer     NOT NULL,
    content_sha256      text        NOT NULL,
    extraction_method   text        NOT NULL,
    sitename            text,
    description         text,
    tags                text[]      NOT NULL DEFAULT '{}',
    relevance           real        CHECK (relevance BETWEEN 0 AND 1),
    event_types         text[]      NOT NULL DEFAULT '{}',
    places              jsonb       NOT NULL DEFAULT '[]',
    actors              jsonb       NOT NULL DEFAULT '[]',
    evidence            jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT reports_canonical_url_key UNIQUE (canonical_url),
    CONSTRAINT reports_content_sha256_key UNIQUE (content_sha256)
);
CREATE INDEX reports_story_idx ON reports (story_id);
CREATE INDEX reports_published_idx ON reports (published_at);

-- Every URL a report was seen under: a second URL for known content is an alias, not a report.
CREATE TABLE report_urls (
    url           text        PRIMARY KEY,
    report_id     bigint      NOT NULL REFERENCES reports ON DELETE CASCADE,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX report_urls_report_idx ON report_urls (report_id);

-- Reports built by the collect step, waiting for the load step (one row per entry, idempotent).
CREATE TABLE staged_reports (
    entry_id            bigint      PRIMARY KEY REFERENCES entries ON DELETE CASCADE,
    source_id           bigint      NOT NULL REFERENCES sources ON DELETE CASCADE,
    page_id             bigint,
    url                 text        NOT NULL,
    canonical_url       text        NOT NULL,
    title               text,
    authors             text[]      NOT NULL DEFAULT '{}',
    published_at        timestamptz,
    published_at_source text,
    fetched_at          timestamptz,
    language            text,
    text                text        NOT NULL,
    summary             text       ,
    word_count          integer     NOT NULL,
    content_sha256      text        NOT NULL,
    extraction_method   text        NOT NULL,
    sitename            text,
    description         text,
    tags                text[]      NOT NULL DEFAULT '{}',
    relevance           real,
    event_types         text[]      NOT NULL DEFAULT '{}',
    places              jsonb       NOT NULL DEFAULT '[]',
    actors              jsonb       NOT NULL DEFAULT '[]',
    evidence            jsonb       NOT NULL DEFAULT '{}',
    staged_at           timestamptz NOT NULL DEFAULT now()
);

-- One row per source per poll: what happened, for `sitrep stats` and for debugging a quiet feed.
CREATE TABLE poll_log (
    poll_id      bigserial PRIMARY KEY,
    source_id    bigint      NOT NULL REFERENCES sources ON DELETE CASCADE,
    run_id       text,
    polled_at    timestamptz NOT NULL DEFAULT now(),
    http_status  integer,
    bytes        integer,
    duration_ms  integer,
    not_modified boolean     NOT NULL DEFAULT false,
    entries_seen integer     NOT NULL DEFAULT 0,
    new_entries  integer     NOT NULL DEFAULT 0,
    error        text
);
CREATE INDEX poll_log_source_idx ON poll_log (source_id, polled_at DESC);

-- lz4 compresses text about 2.5x faster than the default pglz (bulk loads are CPU-bound on it);
-- use it where the server was built with it, keep pglz elsewhere (the embedded build has no lz4).
DO $$
BEGIN
    ALTER TABLE reports ALTER COLUMN text SET COMPRESSION lz4, ALTER COLUMN summary SET COMPRESSION lz4;
    ALTER TABLE staged_reports ALTER COLUMN text SET COMPRESSION lz4, ALTER COLUMN summary SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 is not available on this server; text columns keep pglz';
END $$;
