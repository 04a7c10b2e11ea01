-- Channels, the dispatcher and deliveries.

-- channels_for_update --
SELECT channel_id, doc FROM channels WHERE org_id = $1 AND channel_id = $2;

-- put_channel --
INSERT INTO channels (org_id, channel_id, doc, expiry_time, updated_time)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (org_id, channel_id) DO UPDATE
SET doc = excluded.doc, expiry_time = excluded.expiry_time, updated_time = excluded.updated_time;

-- drop_channel --
DELETE FROM channels WHERE org_id = $1 AND channel_id = $2;

-- count_live_channels --
SELECT COUNT(*) FROM channels WHERE org_id = $1 AND expiry_time > $2;

-- list_channels --
SELECT channel_id, doc FROM channels WHERE org_id = $1 ORDER BY channel_id;

-- get_channel_doc --
SELECT doc FROM channels WHERE org_id = $1 AND channel_id = $2;

-- cancel_channel_deliveries --
UPDATE deliveries SET status = 'cancelled', updated_time = $3,
       last_error = 'channel deleted', next_attempt_time = $3
WHERE org_id = $1 AND channel_id = $2 AND status IN ('pending', 'retrying');

-- dispatch_cursor --
SELECT last_seq, view FROM dispatch_cursors WHERE org_id = $1;

-- put_dispatch_cursor --
INSERT INTO dispatch_cursors (org_id, last_seq, view) VALUES ($1, $2, $3)
ON CONFLICT (org_id) DO UPDATE SET last_seq = excluded.last_seq, view = excluded.view;

-- events_after --
SELECT seq, module, record_id, operation, changed, vals, related, batch, time FROM events
WHERE org_id = $1 AND seq > $2 AND seq IS NOT NULL ORDER BY seq LIMIT $3;

-- insert_delivery --
INSERT INTO deliveries (org_id, channel_id, notification_id, channel_seq, module, operation,
                        ids, affected, related, first_seq, last_seq, status, created_time,
                        next_attempt_time, updated_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $12, $12);

-- org_ids --
SELECT id FROM orgs ORDER BY id;

-- signing_secrets --
SELECT secret, created_time, retired_time FROM signing_secrets
WHERE org_id = $1 AND (retired_time IS NULL OR retired_time > $2)
ORDER BY created_time DESC, secret;

-- add_signing_secret --
INSERT INTO signing_secrets (org_id, secret, created_time) VALUES ($1, $2, $3);

-- retire_signing_secrets --
UPDATE signing_secrets SET retired_time = $2 WHERE org_id = $1 AND retired_time IS NULL;

-- claim_dispatch --
SELECT 1 WHERE $1 IS NOT NULL;

-- channels_with_work --
SELECT DISTINCT org_id, channel_id FROM deliveries
WHERE status IN ('pending', 'retrying') AND next_attempt_time <= $1
LIMIT $2;

-- claim_lease --
INSERT INTO delivery_leases (org_id, channel_id, owner, until_time) VALUES ($1, $2, $3, $4)
ON CONFLICT (org_id, channel_id) DO UPDATE
SET owner = excluded.owner, until_time = excluded.until_time
WHERE delivery_leases.until_time < $5 OR delivery_leases.owner = excluded.owner
RETURNING owner;

-- release_lease --
DELETE FROM delivery_leases WHERE org_id = $1 AND channel_id = $2 AND owner = $3;

-- undelivered --
SELECT id, notification_id, channel_seq, module, operation, ids, affected, related, status,
       attempts, next_attempt_time, first_attempt_time
FROM deliveries
WHERE org_id = $1 AND channel_id = $2 AND status IN ('pending', 'retrying') AND id > $3
ORDER BY id LIMIT $4;

-- finish_attempt --
UPDATE deliveries SET status = $2, attempts = $3, next_attempt_time = $4,
       first_attempt_time = COALESCE(first_attempt_time, $5), updated_time = $6,
       last_status_code = $7, last_error = $8, last_latency_ms = $9
WHERE id = $1 AND status IN ('pending', 'retrying');

-- insert_attempt --
INSERT INTO delivery_attempts (delivery_id, attempt, started_time, url, request_body,
                               status_code, latency_ms, error, response_body)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (delivery_id, attempt) DO NOTHING;

-- cancel_delivery --
UPDATE deliveries SET status = 'cancelled', updated_time = $2, last_error = $3
WHERE id = $1 AND status IN ('pending', 'retrying');

-- list_deliveries --
SELECT id, notification_id, channel_id, channel_seq, module, operation, ids, status, attempts,
       created_time, next_attempt_time, updated_time, last_status_code, last_error,
       last_latency_ms, related
FROM deliveries
WHERE org_id = $1 AND ($2::text IS NULL OR channel_id = $2::text)
  AND ($3::text IS NULL OR status = $3::text)
ORDER BY id DESC LIMIT $4 OFFSET $5;

-- get_delivery --
SELECT id, notification_id, channel_id, channel_seq, module, operation, ids, status, attempts,
       created_time, next_attempt_time, updated_time, last_status_code, last_error,
       last_latency_ms, related
FROM deliveries WHERE org_id = $1 AND id = $2;

-- delivery_attempts --
SELECT attempt, started_time, url, request_body, status_code, latency_ms, error, response_body
FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt;

-- redeliver_one --
UPDATE deliveries SET status = 'pending', next_attempt_time = $3, updated_time = $3,
       first_attempt_time = NULL
WHERE org_id = $1 AND id = $2 AND status IN ('delivered', 'dead', 'retrying')
RETURNING id;

-- redeliver_many --
UPDATE deliveries SET status = 'pending', next_attempt_time = $3, updated_time = $3,
       first_attempt_time = NULL
WHERE org_id = $1 AND status = $2 AND created_time >= $4
RETURNING id;

-- dispatch_behind --
SELECT COALESCE((SELECT MAX(seq) FROM events WHERE org_id = $1 AND seq IS NOT NULL), 0)
     > COALESCE((SELECT last_seq FROM dispatch_cursors WHERE org_id = $1), 0);
