-- Named SQL blocks shared by both backends, with PostgreSQL-style numbered parameters
-- ($1, $2, ...). SQLite runs them as ?1, ?2 (the loader rewrites them). A block of the same
-- name in sqlite.sql or postgres.sql overrides this one for that backend.

-- get_meta --
SELECT value FROM meta WHERE key = $1;

-- put_meta --
INSERT INTO meta (key, value) VALUES ($1, $2)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- insert_org --
INSERT INTO orgs (id, name, timezone, id_prefix, zgid, created_time)
VALUES ($1, $2, $3, $4, $5, $6);

-- org_columns --
SELECT id, name, timezone, id_prefix, zgid, created_time FROM orgs WHERE id = $1;

-- org_by_name --
SELECT id, name, timezone, id_prefix, zgid, created_time FROM orgs WHERE name = $1;

-- list_orgs --
SELECT id, name, timezone, id_prefix, zgid, created_time FROM orgs ORDER BY id;

-- insert_user --
INSERT INTO users (id, org_id, full_name, email, created_time) VALUES ($1, $2, $3, $4, $5);

-- list_users --
SELECT id, full_name, email, created_time FROM users WHERE org_id = $1 ORDER BY id;

-- put_module --
INSERT INTO modules (org_id, api_name, position, definition, modified_time)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (org_id, api_name) DO UPDATE
SET definition = excluded.definition, modified_time = excluded.modified_time;

-- list_modules --
SELECT definition, modified_time FROM modules WHERE org_id = $1 ORDER BY position, api_name;

-- catalog_stamp --
SELECT COALESCE(MAX(modified_time), 0) FROM modules WHERE org_id = $1;

-- insert_client --
INSERT INTO clients (client_id, org_id, user_id, secret_hash, scopes, name, created_time)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- get_client --
SELECT client_id, org_id, user_id, secret_hash, scopes FROM clients WHERE client_id = $1;

-- insert_token --
INSERT INTO tokens (token_hash, kind, client_id, parent_hash, scopes, created_time, expires_time)
VALUES ($1, $2, $3, $4, $5, $6, $7);

-- get_token --
SELECT t.kind, t.client_id, t.scopes, t.expires_time, t.revoked_time, c.org_id, c.user_id,
       t.parent_hash, p.revoked_time
FROM tokens t JOIN clients c ON c.client_id = t.client_id
LEFT JOIN tokens p ON p.token_hash = t.parent_hash
WHERE t.token_hash = $1;

-- use_grant --
UPDATE tokens SET revoked_time = $2
WHERE token_hash = $1 AND kind = 'grant' AND revoked_time IS NULL
RETURNING token_hash;

-- revoke_token --
UPDATE tokens SET revoked_time = $2
WHERE (token_hash = $1 OR parent_hash = $1) AND revoked_time IS NULL;

-- live_access_tokens --
SELECT token_hash FROM tokens
WHERE parent_hash = $1 AND kind = 'access' AND revoked_time IS NULL
ORDER BY created_time DESC, token_hash;

-- record_name --
SELECT name FROM records WHERE org_id = $1 AND module = $2 AND id = $3;

-- get_record --
SELECT id, data, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND id = $3;

-- lock_record --
SELECT id, data, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND id = $3;

-- subform_rows --
SELECT id, data, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND parent_id = $3 ORDER BY id;

-- insert_record --
INSERT INTO records (id, org_id, module, parent_id, name, data, created_time, modified_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- update_record --
UPDATE records SET data = $2, name = $3, modified_time = $4 WHERE id = $1;

-- delete_record --
DELETE FROM records WHERE id = $1;

-- insert_deleted --
INSERT INTO deleted_records (id, org_id, module, name, created_by, deleted_by, deleted_time)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (id) DO NOTHING;

-- list_key_fields --
SELECT module, field FROM key_fields WHERE org_id = $1;

-- add_key_field --
INSERT INTO key_fields (org_id, module, field) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING;

-- drop_key_field --
DELETE FROM key_fields WHERE org_id = $1 AND module = $2 AND field = $3;

-- drop_field_keys --
DELETE FROM record_keys WHERE org_id = $1 AND module = $2 AND field = $3;

-- fill_field_keys --
-- A field that just became a key field: its values of the module's records (as the
-- triggers of migration 0006 write them).
INSERT INTO record_keys (record_id, field, org_id, module, value)
SELECT id, $3::text, org_id, module, lower(data ->> $3::text) FROM records
WHERE org_id = $1 AND module = $2 AND jsonb_typeof(data -> $3::text) IN ('string', 'number')
  AND length(data ->> $3::text) <= 255
ON CONFLICT (record_id, field) DO UPDATE SET value = excluded.value;

-- find_by_key --
-- A record of the module whose field has this value, case-insensitively (record_keys holds
-- the lower-cased short scalar values, migration 0006).
SELECT record_id FROM record_keys
WHERE org_id = $1 AND module = $2 AND field = $3 AND value = lower($4) AND record_id <> $5
ORDER BY record_id LIMIT 1;

-- is_deleted --
SELECT 1 FROM deleted_records WHERE org_id = $1 AND module = $2 AND id = $3;

-- list_deleted --
SELECT id, name, created_by, deleted_by, deleted_time FROM deleted_records
WHERE org_id = $1 AND module = $2
ORDER BY deleted_time DESC, id DESC LIMIT $3 OFFSET $4;

-- changes --
SELECT seq, module, record_id, operation, changed, vals, time, user_id FROM events
WHERE org_id = $1 AND seq > $2 AND seq IS NOT NULL ORDER BY seq LIMIT $3;

-- journal_head --
SELECT COALESCE(MAX(seq), 0) FROM events WHERE org_id = $1 AND seq IS NOT NULL;

-- subform_rows_read --
SELECT id, data, created_time, modified_time, name, parent_id FROM records
WHERE org_id = $1 AND module = $2 AND parent_id = $3 ORDER BY id;
