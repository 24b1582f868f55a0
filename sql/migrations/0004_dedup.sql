-- sitrep 0004: near-duplicate layer (MinHash-LSH bands) and story clusters.

-- The LSH band keys the worker computed (sitrep.dedup.band_keys), staged with the report.
ALTER TABLE staged_reports ADD COLUMN minhash bigint[] NOT NULL DEFAULT '{}';

-- The LSH index: one row per (band, key) of every report's MinHash. Finding a report's candidates is
-- one probe of the primary key per band, whatever the number of reports, and the index lives here, so
-- it survives restarts and every loader shares it. A derived index: no foreign key (rows are written
-- in bulk under the load lock, and reports are never deleted), a report's rows are replaced when its
-- text changes, and verification ignores a report_id that no longer exists.
CREATE TABLE story_bands (
    band      smallint NOT NULL,
    hash      bigint   NOT NULL,
    report_id bigint   NOT NULL,
    PRIMARY KEY (band, hash, report_id)
);
CREATE INDEX story_bands_report_idx ON story_bands (report_id);

-- Stories: the most recently grown first (`sitrep stories`).
CREATE INDEX stories_updated_idx ON stories (updated_at DESC);
CREATE INDEX reports_duplicate_of_idx ON reports (duplicate_of) WHERE duplicate_of IS NOT NULL;
