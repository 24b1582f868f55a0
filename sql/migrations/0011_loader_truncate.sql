-- sitrep 0011: `sitrep stories --reindex all` rebuilds the LSH index (story_bands, derived data) with
-- TRUNCATE, which the pipeline's role could not run: the compose deployment's commands run as it.
GRANT TRUNCATE ON story_bands TO sitrep_loader;
