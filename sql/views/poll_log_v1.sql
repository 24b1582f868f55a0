-- One row per poll of one feed in one run: what `sitrep stats` summarises, readable by consumers.
-- pages_fetched counts the source's pages fetched after this poll and before its next one (the
-- collect step that follows the poll fetches them), so a run's rows add up to the pages it fetched.
CREATE OR REPLACE VIEW poll_log_v1 AS
SELECT l.poll_id, l.run_id, l.polled_at, l.source_id, s.name AS source, s.feed_url, l.http_status, l.bytes,
       l.duration_ms, l.attempts, l.redirects, l.conditional, l.revalidation, l.not_modified, l.unchanged, l.parsed,
       l.entries_seen, l.new_entries, l.entries_skipped, l.problems,
       (SELECT count(*) FROM pages p JOIN entries e ON e.entry_id = p.entry_id
        WHERE e.source_id = l.source_id AND p.fetched_at >= l.polled_at
          AND p.fetched_at < coalesce((SELECT min(n.polled_at) FROM poll_log n
                                       WHERE n.source_id = l.source_id AND n.polled_at > l.polled_at),
                                      'infinity'))::integer AS pages_fetched,
       l.error, l.blocked, l.retry_after, l.next_poll_at
FROM poll_log l JOIN sources s ON s.source_id = l.source_id;
