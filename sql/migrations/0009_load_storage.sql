-- sitrep 0009: storage for a faster load step.

-- Raw pages are kept zstd-compressed (level 1: a third of zlib's CPU per page, smaller rows). Rows
-- written before stay zlib; the two are told apart by their first bytes (a zstd frame starts
-- 28 B5 2F FD, a zlib stream never does), see sitrep.store.page_body. The column keeps its name so
-- that readers of either need no change of SQL.
COMMENT ON COLUMN pages.body_zlib IS 'the page body as fetched, compressed: zstd (frame magic 28 B5 2F FD) or zlib (pages stored before 0009); decode with sitrep.store.page_body';

-- The LSH index's lookup by report (only to replace a revised report's keys, and `sitrep stories
-- --reindex`) as BRIN instead of a B-tree: a batch's keys are inserted together, so block ranges by
-- report_id find a report among its batch's, and the B-tree was a third of the WAL and of the time of
-- every batch's band insert (measured in EXPLAIN (ANALYZE, WAL): 2.4 s -> 1.5 s for 330k keys).
-- minmax-multi keeps a range useful when a revised report's keys land among later reports'.
DROP INDEX story_bands_report_idx;
CREATE INDEX story_bands_report_idx ON story_bands USING brin (report_id int8_minmax_multi_ops)
    WITH (autosummarize = on);
