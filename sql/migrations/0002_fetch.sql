-- sitrep 0002: feed health and the poll log's detail (issue 3: polite, safe, incremental fetching).

-- Per source: when the validators were last checked by an unconditional poll, when polls last
-- succeeded, and when (and why, in disabled_reason) the source was disabled automatically.
ALTER TABLE sources
    ADD COLUMN validators_checked_at timestamptz,
    ADD COLUMN last_success_at       timestamptz,
    ADD COLUMN disabled_at           timestamptz;

CREATE INDEX sources_due_idx ON sources (next_poll_at) WHERE enabled AND kind = 'feed';

-- Per poll: how it was asked (validators sent, or an unconditional revalidation), what it cost
-- (attempts, redirects) and what the feed held (entries skipped, oddities counted by kind).
ALTER TABLE poll_log
    ADD COLUMN conditional     boolean     NOT NULL DEFAULT false,
    ADD COLUMN revalidation    boolean     NOT NULL DEFAULT false,
    ADD COLUMN unchanged       boolean     NOT NULL DEFAULT false,
    ADD COLUMN parsed          boolean     NOT NULL DEFAULT false,
    ADD COLUMN blocked         boolean     NOT NULL DEFAULT false,
    ADD COLUMN attempts        integer     NOT NULL DEFAULT 1,
    ADD COLUMN redirects       integer     NOT NULL DEFAULT 0,
    ADD COLUMN entries_skipped integer     NOT NULL DEFAULT 0,
    ADD COLUMN problems        jsonb       NOT NULL DEFAULT '{}',
    ADD COLUMN retry_after     integer,
    ADD COLUMN next_poll_at    timestamptz;

CREATE INDEX poll_log_run_idx ON poll_log (run_id, polled_at);
