-- PostgreSQL-only blocks (override queries.sql by name).

-- emit --
INSERT INTO events (org_id, module, record_id, operation, changed, vals, related, batch, time,
                    user_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- next_id_block --
SELECT nextval('crm_id_blocks');

-- lock_record --
SELECT id, data::text, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND id = $3 FOR UPDATE;

-- get_record --
SELECT id, data::text, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND id = $3;

-- subform_rows --
SELECT id, data::text, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND parent_id = $3 ORDER BY id FOR UPDATE;

-- insert_record --
INSERT INTO records (id, org_id, module, parent_id, name, data, created_time, modified_time)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8);

-- update_record --
UPDATE records SET data = $2::jsonb, name = $3, modified_time = $4 WHERE id = $1;

-- sequence_events --
-- Number every committed, unnumbered event: transactions in the order of their last event
-- id (a transaction that waited on another's row lock inserted after that one committed),
-- events within a transaction by id; per org, continuing from journal_heads.
WITH pending AS (
    SELECT id, org_id, xid FROM events WHERE seq IS NULL ORDER BY id LIMIT $1 FOR UPDATE
), tx AS (
    SELECT xid, MAX(id) AS last_id FROM pending GROUP BY xid
), ordered AS (
    SELECT p.id, p.org_id,
           ROW_NUMBER() OVER (PARTITION BY p.org_id ORDER BY tx.last_id, p.id) AS n
    FROM pending p JOIN tx ON tx.xid = p.xid
), heads AS (
    INSERT INTO journal_heads (org_id, last_seq)
    SELECT org_id, COUNT(*) FROM ordered GROUP BY org_id
    ON CONFLICT (org_id) DO UPDATE SET last_seq = journal_heads.last_seq + excluded.last_seq
    RETURNING org_id, last_seq
), counts AS (
    SELECT org_id, COUNT(*) AS c FROM ordered GROUP BY org_id
)
UPDATE events e SET seq = h.last_seq - c.c + o.n
FROM ordered o JOIN heads h ON h.org_id = o.org_id JOIN counts c ON c.org_id = o.org_id
WHERE e.id = o.id
RETURNING e.org_id;

-- subform_rows_read --
SELECT id, data::text, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND parent_id = $3 ORDER BY id;
