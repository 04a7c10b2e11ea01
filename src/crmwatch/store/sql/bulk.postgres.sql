-- lock_bulk_job --
SELECT id, org_id, module, query, file_type, callback, state, created_time, created_by, plan,
       page, per_page, count, more_records, file_path, error, updated_time, api_version,
       lease_owner, lease_until, attempts, after_id, last_id, finished_time, expires_time,
       page_token, callback_state, callback_attempts, callback_next_ms, callback_error
FROM bulk_jobs WHERE id = $1 FOR UPDATE;

-- lock_bulk_admission --
-- A transaction-scoped advisory lock per org: two creates of one org count and insert one
-- after the other, so that the active-job limit holds under concurrency.
SELECT pg_advisory_xact_lock(hashtextextended('crmwatch.bulk_admission:' || ($1::bigint)::text, 0));
