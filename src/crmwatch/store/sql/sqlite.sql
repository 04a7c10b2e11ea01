-- SQLite-only blocks (override queries.sql by name).

-- emit --
INSERT INTO events (org_id, seq, module, record_id, operation, changed, vals, related, batch,
                    time, user_id)
VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE org_id = $1),
        $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- next_ids --
UPDATE counters SET value = value + $1 WHERE name = 'ids' RETURNING value;
