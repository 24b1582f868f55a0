-- sitrep 0006: the consumers of reports_v1. Database roles, export watermarks and manifests, alert
-- rules, the alert outbox with its deliveries and dead letters, and a NOTIFY for live listeners.

-- ------------------------------------------------------------------------------------------ roles
-- sitrep_reader: a warehouse or BI tool. It reads the versioned views (reports_v1, ...) and nothing
--   else; the grants on the views are in sql/views/zz_reader_grants.sql, re-run after every
--   migration so that a new view version (reports_v2) is readable as soon as it exists.
-- sitrep_loader: the pipeline itself (Airflow's connection), reads and writes the tables.
-- Neither gets a password here. Set them with `sitrep roles passwords` (from SITREP_READER_PASSWORD and
-- SITREP_LOADER_PASSWORD, sent as SCRAM verifiers), or at migration time with the custom settings
-- sitrep.reader_password / sitrep.loader_password, e.g. PGOPTIONS='-c sitrep.reader_password=...'.
-- Roles belong to the whole server, so they are created only when missing, and another database's
-- first migration creating them at the same moment (the migration lock is per database) is no error.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sitrep_reader') THEN
        BEGIN
            CREATE ROLE sitrep_reader LOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sitrep_loader') THEN
        BEGIN
            CREATE ROLE sitrep_loader LOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF coalesce(current_setting('sitrep.reader_password', true), '') <> '' THEN
        EXECUTE format('ALTER ROLE sitrep_reader PASSWORD %L', current_setting('sitrep.reader_password'));
    END IF;
    IF coalesce(current_setting('sitrep.loader_password', true), '') <> '' THEN
        EXECUTE format('ALTER ROLE sitrep_loader PASSWORD %L', current_setting('sitrep.loader_password'));
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'sitrep 0006 must create the roles sitrep_reader and sitrep_loader: run the migration as a role with CREATEROLE, or create both roles (LOGIN) by hand first';
END $$;

-- Every session of the reader is read-only (defence in depth beside the grants). The roles may exist
-- already (another sitrep database on this server, or made by hand), and an owner without the right to
-- alter them must not fail the migration for it: it is told what to run instead.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
                   WHERE r.rolname = 'sitrep_reader' AND s.setdatabase = 0
                     AND 'default_transaction_read_only=on' = ANY(s.setconfig)) THEN
        ALTER ROLE sitrep_reader SET default_transaction_read_only = on;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'sitrep 0006: could not make sitrep_reader''s sessions read-only; a superuser should run: ALTER ROLE sitrep_reader SET default_transaction_read_only = on';
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO sitrep_reader, sitrep_loader', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO sitrep_loader', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO sitrep_reader, sitrep_loader;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- ------------------------------------------------------------------------------ export (warehouse)
-- One watermark per consumer: 'export:<base path>' for each export destination, 'alerts' for the rules.
CREATE TABLE downstream_watermarks (
    consumer   text        PRIMARY KEY,
    ingest_seq bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per export step: planned (files chosen, not yet committed) then committed, in the same
-- transaction that moves the watermark. A planned row left by a crash is redone with the same range.
CREATE TABLE export_manifests (
    manifest_id  bigserial   PRIMARY KEY,
    target       text        NOT NULL,            -- the base path (local folder or fsspec URL)
    kind         text        NOT NULL DEFAULT 'incremental' CHECK (kind IN ('incremental', 'backfill')),
    status       text        NOT NULL DEFAULT 'planned' CHECK (status IN ('planned', 'committed')),
    min_seq      bigint      NOT NULL,            -- exclusive lower bound of the range
    max_seq      bigint      NOT NULL,            -- inclusive upper bound
    rows         integer     NOT NULL DEFAULT 0,
    first_seq    bigint,                          -- smallest and largest ingest_seq actually exported
    last_seq     bigint,
    files        jsonb       NOT NULL DEFAULT '[]', -- [{path, rows, sha256, bytes, min_seq, max_seq}]
    created_at   timestamptz NOT NULL DEFAULT now(),
    committed_at timestamptz,
    UNIQUE (target, kind, min_seq, max_seq)
);
CREATE UNIQUE INDEX export_manifests_one_planned ON export_manifests (target, kind) WHERE status = 'planned';

-- ----------------------------------------------------------------------------------------- alerts
-- Synced from seeds/alert_rules.yaml (SITREP_ALERT_RULES); a rule removed from the file is disabled,
-- never deleted, so its alerts keep their rule.
CREATE TABLE alert_rules (
    rule_id       bigserial   PRIMARY KEY,
    name          text        NOT NULL UNIQUE,
    enabled       boolean     NOT NULL DEFAULT true,
    query         text,                           -- websearch_to_tsquery syntax, over title + text
    text_config   regconfig   NOT NULL DEFAULT 'english',
    places        jsonb       NOT NULL DEFAULT '[]', -- [{name, geonames_id, lat, lon, radius_km}]
    actors        text[]      NOT NULL DEFAULT '{}',
    event_types   text[]      NOT NULL DEFAULT '{}',
    sources       text[]      NOT NULL DEFAULT '{}',
    language      text,
    min_relevance real        CHECK (min_relevance BETWEEN 0 AND 1),
    webhooks      jsonb       NOT NULL DEFAULT '[]', -- [{url, format: json|slack, secret_env}]
    definition    jsonb       NOT NULL,            -- the rule as written in the file
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The outbox: one alert per rule per story (a syndicated copy adds its report id, never a second alert).
CREATE TABLE alerts (
    alert_id    bigserial   PRIMARY KEY,
    rule_id     bigint      NOT NULL REFERENCES alert_rules,
    story_id    bigint      NOT NULL,
    report_id   bigint      NOT NULL,            -- the first report of the story that matched
    report_ids  bigint[]    NOT NULL,            -- every report of the story that matched
    payload     jsonb       NOT NULL,            -- what the webhooks receive (JSON format)
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, story_id)
);

-- One delivery per alert per webhook; it leaves the database only after the commit that recorded it.
CREATE TABLE alert_deliveries (
    delivery_id     bigserial   PRIMARY KEY,
    alert_id        bigint      NOT NULL REFERENCES alerts ON DELETE CASCADE,
    url             text        NOT NULL,
    format          text        NOT NULL DEFAULT 'json' CHECK (format IN ('json', 'slack')),
    secret_env      text,                        -- the environment variable holding the HMAC secret
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (alert_id, url)
);
CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (next_attempt_at) WHERE status = 'pending';

-- Deliveries that kept failing, with the last error; `sitrep alerts retry` moves them back to pending.
CREATE TABLE alert_dead_letters (
    delivery_id bigint      PRIMARY KEY REFERENCES alert_deliveries ON DELETE CASCADE,
    alert_id    bigint      NOT NULL REFERENCES alerts ON DELETE CASCADE,
    url         text        NOT NULL,
    attempts    integer     NOT NULL,
    last_status integer,
    last_error  text,
    failed_at   timestamptz NOT NULL DEFAULT now()
);

-- LISTEN sitrep_alerts: one notification per new alert, sent when its transaction commits.
-- Payload (JSON): {"alert_id", "rule_id", "rule", "story_id", "report_id"}.
CREATE FUNCTION sitrep_notify_alert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sitrep_alerts', json_build_object(
        'alert_id', NEW.alert_id, 'rule_id', NEW.rule_id,
        'rule', (SELECT name FROM alert_rules WHERE rule_id = NEW.rule_id),
        'story_id', NEW.story_id, 'report_id', NEW.report_id)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER alerts_notify AFTER INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION sitrep_notify_alert();

-- -------------------------------------------------------------------------------- loader grants
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO sitrep_loader;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO sitrep_loader;
-- Tables and sequences that later migrations create (as the role that runs migrations).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO sitrep_loader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO sitrep_loader;
