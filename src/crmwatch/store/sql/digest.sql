-- Record digests (GET /crmwatch/v1/digest): one module's records over an id range, in id
-- order, read page by page (keyset: the next page starts after the last id seen).

-- digest_count --
SELECT COUNT(*) FROM records WHERE org_id = $1 AND module = $2 AND id >= $3 AND id <= $4;

-- digest_page --
SELECT id, data, created_time, modified_time FROM records
WHERE org_id = $1 AND module = $2 AND id >= $3 AND id <= $4
ORDER BY id LIMIT $5;
