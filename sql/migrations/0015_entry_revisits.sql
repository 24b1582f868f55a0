-- sitrep 0015: an entry whose feed says it changed is fetched again.
-- An entry was fetched once: when a site updated an article (a death toll revised, a correction) and
-- its feed said so with a later <updated> (or pubDate), the report kept the first text. Now the poll
-- records that date, and a later one on an entry that loaded its own report sends it back to pending
-- with `revisits` + 1: the collect fetches the page of an entry with revisits > 0 even though its URL is
-- known, and the loader makes revision + 1 if the text changed (nothing if it did not). A feed that
-- bumps its dates on every poll costs at most a few fetches per article (sitrep.sources.MAX_REVISITS).
ALTER TABLE entries
    ADD COLUMN feed_updated_at timestamptz,
    ADD COLUMN revisits integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN entries.feed_updated_at IS 'the feed item''s updated date, else its published one, as last polled';
COMMENT ON COLUMN entries.revisits IS 'times fetched again because its feed said it changed (then fetched even if its URL is known)';
