-- SQLite-only blocks (override queries.sql by name).

-- emit --
INSERT INTO events (org_id, seq, module, record_id, operation, changed, vals, related, batch,
                    time, user_id)
VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE org_id = $1),
        $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- next_ids --
UPDATE counters SET value = value + $1 WHERE name = 'ids' RETURNING value;

-- fill_field_keys --
-- (queries.sql) with SQLite's JSON functions, as migration 0006's triggers.
INSERT INTO record_keys (record_id, field, org_id, module, value)
SELECT id, $3, org_id, module, lower(CAST(json_extract(data, '$."' || $3 || '"') AS TEXT))
FROM records
WHERE org_id = $1 AND module = $2
  AND json_type(data, '$."' || $3 || '"') IN ('text', 'integer', 'real')
  AND length(CAST(json_extract(data, '$."' || $3 || '"') AS TEXT)) <= 255
ON CONFLICT (record_id, field) DO UPDATE SET value = excluded.value;
