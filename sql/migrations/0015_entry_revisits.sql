-- sitrep 0015: an entry whose feed says it changed is fetched again.
-- An entry was fetched once: when a site updated an article (a death toll revised, a correction) and
-- its feed said so with a later <updated> (or pubDate), the report kept the first text. Now the poll
-- records that date, and a later one on an entry already loaded sends it back to pending with
-- `revisit` set, so the collect fetches its page even though its URL is known; the loader then makes
-- revision + 1 if the text changed (nothing if it did not). `revisits` counts them: a feed that bumps
-- its dates on every poll costs at most a few fetches per article (sitrep.sources.MAX_REVISITS).
ALTER TABLE entries
    ADD COLUMN feed_updated_at timestamptz,
    ADD COLUMN revisit boolean NOT NULL DEFAULT false,
    ADD COLUMN revisits integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN entries.feed_updated_at IS 'the feed item''s updated date, else its published one, as last polled';
COMMENT ON COLUMN entries.revisit IS 'pending again because its feed said it changed: fetch it even if its URL is known';
