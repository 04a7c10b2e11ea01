-- lock_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time
FROM bulk_jobs WHERE id = $1 FOR UPDATE;
