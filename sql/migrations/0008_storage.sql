-- sitrep 0008: don't make PostgreSQL compress what is already compressed or short-lived.
-- Raw pages are zlib-compressed by the pipeline: pglz would try (and fail) again on every row.
-- Staged report text lives for seconds between the collect and load tasks: compressing it there
-- doubles the CPU the final insert into reports spends anyway (measured by `make bench`: the
-- stage step was 40% of the pipeline's task time).
ALTER TABLE pages ALTER COLUMN body_zlib SET STORAGE EXTERNAL;
ALTER TABLE staged_reports ALTER COLUMN text SET STORAGE EXTERNAL, ALTER COLUMN summary SET STORAGE EXTERNAL;
