-- lock_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time, api_version,
       lease_owner, lease_until, attempts, after_id, last_id, finished_time, expires_time,
       page_token, callback_state, callback_attempts, callback_next_ms, callback_error
FROM bulk_jobs WHERE id = $1 FOR UPDATE;
