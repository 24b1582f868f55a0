-- sitrep 0010: when a report's own page was last seen with its text unchanged.

-- A fetch of a report's page (by URL or canonical URL) that finds the text unchanged changes nothing a
-- reader sees (no revision, no ingest_seq): its time is kept here, so that an older fetch loaded after it
-- (a batch delayed or retried) never revises the report back to what the page said before. Internal:
-- not in reports_v1.
ALTER TABLE reports ADD COLUMN checked_at timestamptz;
COMMENT ON COLUMN reports.checked_at IS 'the latest fetch of the report''s own page that found its text unchanged (internal; not in reports_v1)';
