-- sitrep 0003: extraction outcomes per page, for per-source extraction health (sitrep.extract_health),
-- and the index `sitrep reextract --since` reads stored pages by.

-- One row per extraction of a page (the collect step, and every `sitrep reextract`): which step of the
-- fallback chain produced the text (extraction_method) and how many words, or why nothing usable came out.
CREATE TABLE extraction_log (
    extraction_id     bigserial   PRIMARY KEY,
    source_id         bigint      NOT NULL REFERENCES sources ON DELETE CASCADE,
    entry_id          bigint      REFERENCES entries ON DELETE SET NULL,
    page_id           bigint      REFERENCES pages ON DELETE SET NULL,
    extracted_at      timestamptz NOT NULL DEFAULT now(),
    extraction_method text,                       -- null when the extraction failed
    word_count        integer     NOT NULL DEFAULT 0,
    failure           text,                       -- the reason, when nothing usable was found
    reextract         boolean     NOT NULL DEFAULT false,
    CHECK ((extraction_method IS NULL) = (failure IS NOT NULL))
);
CREATE INDEX extraction_log_source_idx ON extraction_log (source_id, extraction_id DESC);

CREATE INDEX pages_fetched_at_idx ON pages (fetched_at);
