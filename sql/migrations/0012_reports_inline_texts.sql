-- sitrep 0012: a report's text up to about 8 KB stays in its row, uncompressed.
-- With the default target (2 KB) PostgreSQL compressed every news-sized text with pglz as the load
-- inserted it: half the time of the reports insert (0.55 -> 0.27 s per 10k reports of 2 KB, measured
-- with EXPLAIN ANALYZE), the load's largest single statement. The cost is disk: the reports heap some
-- 20% larger (22 -> 27 MB per 10k such reports); longer texts are still compressed and moved out of
-- line as before. Rows written before keep their storage until they are updated.
ALTER TABLE reports SET (toast_tuple_target = 8160);
