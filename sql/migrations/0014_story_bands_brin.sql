-- sitrep 0014: the LSH index's lookup by report is BRIN on every database.
-- A database migrated while 0009 was 0009_pages_zstd.sql (before 92b4519, which renamed it and added
-- the BRIN index) recorded 0009 as applied and never ran the index change: it kept the B-tree, a third
-- of the WAL and time of every batch's band insert. This makes it the same as a fresh install.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_am am ON am.oid = c.relam
               WHERE c.oid = to_regclass('story_bands_report_idx') AND am.amname <> 'brin') THEN
        DROP INDEX story_bands_report_idx;
        CREATE INDEX story_bands_report_idx ON story_bands USING brin (report_id int8_minmax_multi_ops)
            WITH (autosummarize = on);
    END IF;
END
$$;
