-- Bulk Read jobs. Every SELECT of a whole job lists the columns in store.bulk.Job's order.

-- insert_bulk_job --
INSERT INTO bulk_jobs (id, org_id, module, query, file_type, callback, state, created_time,
                       created_by, plan, page, per_page, updated_time, api_version, after_id)
VALUES ($1, $2, $3, $4, $5, $6, 'ADDED', $7, $8, $9, $10, $11, $7, $12, $13);

-- get_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time, api_version,
       lease_owner, lease_until, attempts, after_id, last_id, finished_time, expires_time,
       page_token, callback_state, callback_attempts, callback_next_ms, callback_error
FROM bulk_jobs WHERE org_id = $1 AND id = $2;

-- lock_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time, api_version,
       lease_owner, lease_until, attempts, after_id, last_id, finished_time, expires_time,
       page_token, callback_state, callback_attempts, callback_next_ms, callback_error
FROM bulk_jobs WHERE id = $1;

-- bulk_job_by_token --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time, api_version,
       lease_owner, lease_until, attempts, after_id, last_id, finished_time, expires_time,
       page_token, callback_state, callback_attempts, callback_next_ms, callback_error
FROM bulk_jobs WHERE page_token = $1;

-- bulk_jobs_runnable --
SELECT id FROM bulk_jobs
WHERE state = 'ADDED' OR (state = 'IN PROGRESS' AND lease_until < $1)
ORDER BY id LIMIT $2;

-- lock_bulk_admission --
-- Serialises counting an org's active jobs and adding one (create_job). SQLite: its single
-- writer already runs one write at a time, so nothing to do; PostgreSQL overrides it.
SELECT $1;

-- count_active_bulk_jobs --
SELECT count(*) FROM bulk_jobs WHERE org_id = $1 AND state IN ('ADDED', 'IN PROGRESS');

-- set_bulk_running --
UPDATE bulk_jobs SET state = 'IN PROGRESS', lease_owner = $2, lease_until = $3,
       attempts = attempts + 1, updated_time = $4
WHERE id = $1;

-- renew_bulk_lease --
UPDATE bulk_jobs SET lease_until = $3
WHERE id = $1 AND lease_owner = $2 AND state = 'IN PROGRESS'
RETURNING id;

-- release_bulk_job --
UPDATE bulk_jobs SET state = 'ADDED', lease_owner = NULL, lease_until = NULL,
       attempts = attempts - 1, updated_time = $3
WHERE id = $1 AND lease_owner = $2 AND state = 'IN PROGRESS';

-- finish_bulk_job --
UPDATE bulk_jobs SET state = $2, count = $3, more_records = $4, file_path = $5, error = $6,
       last_id = $7, page_token = $8, finished_time = $9, expires_time = $10,
       callback_state = $11, callback_next_ms = $12, lease_owner = NULL, lease_until = NULL,
       updated_time = $9
WHERE id = $1;

-- bulk_callbacks_due --
SELECT id, callback_next_ms FROM bulk_jobs
WHERE callback_state = 'pending' AND callback_next_ms <= $1
ORDER BY callback_next_ms LIMIT $2;

-- claim_bulk_callback --
UPDATE bulk_jobs SET callback_next_ms = $3
WHERE id = $1 AND callback_state = 'pending' AND callback_next_ms = $2
RETURNING id;

-- set_bulk_callback --
UPDATE bulk_jobs SET callback_state = $2, callback_attempts = $3, callback_next_ms = $4,
       callback_error = $5
WHERE id = $1;

-- bulk_results_expired --
SELECT id, file_path FROM bulk_jobs
WHERE file_path IS NOT NULL AND expires_time <= $1
ORDER BY expires_time LIMIT $2;

-- clear_bulk_result --
UPDATE bulk_jobs SET file_path = NULL WHERE id = $1 AND file_path = $2;
