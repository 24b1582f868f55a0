-- Consumers (role sitrep_reader, created by migration 0006) read the versioned views and nothing else.
-- This file runs after every view file (its name sorts last), after every migration run, so a new
-- view version (reports_v2, ...) is readable as soon as it exists. Base tables are never granted.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') AND c.relname ~ '_v[0-9]+$'
    LOOP
        EXECUTE format('GRANT SELECT ON public.%I TO sitrep_reader', v.relname);
    END LOOP;
END $$;
