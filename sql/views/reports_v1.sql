-- reports_v1: the downstream contract. Add columns only in a new version (reports_v2); never change
-- a column's meaning here. Readers follow ingest_seq as their watermark: it only grows, and a row
-- whose text changes gets a new ingest_seq (and revision).
CREATE OR REPLACE VIEW reports_v1 AS
SELECT
    r.report_id,
    r.story_id,
    r.duplicate_of,
    s.name                                          AS source,
    CASE WHEN s.kind = 'feed' THEN s.feed_url END  AS feed_url,
    r.url,
    r.canonical_url,
    r.title,
    r.authors,
    r.published_at,
    r.published_at_source,
    r.fetched_at,
    r.ingested_at,
    r.ingest_seq,
    r.language,
    r.text,
    r.summary,
    r.word_count,
    r.content_sha256,
    r.extraction_method,
    r.relevance,
    r.event_types,
    r.places,
    r.actors,
    r.revision,
    r.updated_at
FROM reports r
JOIN sources s USING (source_id);

-- What each column means, for readers who look in psql (\d+ reports_v1) rather than in the README.
COMMENT ON VIEW reports_v1 IS 'sitrep reports, one row per report (contract v1): follow ingest_seq as the watermark';
COMMENT ON COLUMN reports_v1.story_id IS 'the story (an article and its syndicated or near-duplicate copies) this report belongs to';
COMMENT ON COLUMN reports_v1.duplicate_of IS 'the story''s representative report when this one is a copy of it; null for the representative';
COMMENT ON COLUMN reports_v1.canonical_url IS 'sitrep''s one spelling of the article for deduplication (https, no www./m./amp., no tracking parameters, query sorted): a key, not always an address that answers; fetch url';
COMMENT ON COLUMN reports_v1.content_sha256 IS 'SHA-256 of the text with case, punctuation and spacing folded (the exact-duplicate key), not of text as stored';
COMMENT ON COLUMN reports_v1.published_at IS 'when the article was published, UTC; null when unknown (published_at_source says where it was read: article, feed, url, fetched)';
COMMENT ON COLUMN reports_v1.ingest_seq IS 'strictly increasing: a new or changed report gets a new one; the watermark of incremental readers';
COMMENT ON COLUMN reports_v1.relevance IS 'conflict relevance from 0 to 1 (SITREP_RELEVANCE_THRESHOLD, default 0.5, marks conflict reporting)';
COMMENT ON COLUMN reports_v1.places IS 'places named in the text: name, geonames_id, country_code, lat, lon, mentions';
COMMENT ON COLUMN reports_v1.actors IS 'actors named in the text: name, kind';
COMMENT ON COLUMN reports_v1.revision IS 'starts at 1; a changed article keeps its report_id, with revision + 1 and a new ingest_seq';
