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
