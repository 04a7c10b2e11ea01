-- Bulk Read jobs.

-- insert_bulk_job --
INSERT INTO bulk_jobs (id, org_id, module, query, file_type, callback, state, created_time,
                       created_by, plan, page, per_page, updated_time)
VALUES ($1, $2, $3, $4, $5, $6, 'ADDED', $7, $8, $9, $10, $11, $7);

-- get_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time
FROM bulk_jobs WHERE org_id = $1 AND id = $2;

-- lock_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time
FROM bulk_jobs WHERE id = $1;

-- bulk_jobs_in_state --
SELECT id FROM bulk_jobs WHERE state = $1 ORDER BY id LIMIT $2;

-- set_bulk_state --
UPDATE bulk_jobs SET state = $2, count = $3, more_records = $4, file_path = $5, error = $6,
       updated_time = $7
WHERE id = $1;
