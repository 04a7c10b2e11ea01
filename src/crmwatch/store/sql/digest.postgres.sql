-- PostgreSQL overrides of digest.sql: the record data as JSON text.

-- digest_page --
SELECT id, data::text, created_time, modified_time FROM records
WHERE org_id = $1 AND module = $2 AND id >= $3 AND id <= $4
ORDER BY id LIMIT $5;
