-- lock_org_channels --
SELECT $1;

-- list_deliveries --
SELECT id, notification_id, channel_id, channel_seq, module, operation, ids, status, attempts,
       created_time, next_attempt_time, updated_time, last_status_code, last_error,
       last_latency_ms, related
FROM deliveries
WHERE org_id = $1 AND ($2 IS NULL OR channel_id = $2) AND ($3 IS NULL OR status = $3)
ORDER BY id DESC LIMIT $4 OFFSET $5;

-- channels_with_work --
-- Written so that SQLite uses the partial index `deliveries_due` (its WHERE must appear
-- verbatim) rather than scanning every delivery through `deliveries_channel` (`+org_id`).
SELECT DISTINCT org_id, channel_id FROM deliveries
WHERE status IN ('pending', 'retrying', 'sending') AND status <> 'sending'
  AND next_attempt_time <= $1 AND +org_id > 0
LIMIT $2;
