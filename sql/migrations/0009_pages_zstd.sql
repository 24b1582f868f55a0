-- sitrep 0009: raw pages are kept zstd-compressed (level 1: a third of zlib's CPU per page, smaller).
-- Rows written before stay zlib; the two are told apart by their first bytes (a zstd frame starts
-- 28 B5 2F FD, a zlib stream never does), see sitrep.store.page_body. The column keeps its name so
-- that readers of either need no change of SQL.
COMMENT ON COLUMN pages.body_zlib IS 'the page body as fetched, compressed: zstd (frame magic 28 B5 2F FD) or zlib (pages stored before 0009); decode with sitrep.store.page_body';
