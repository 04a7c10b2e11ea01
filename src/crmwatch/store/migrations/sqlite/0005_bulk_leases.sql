-- Bulk Read, second part: runner leases (any worker process may run a job; one left by a
-- dead runner is taken over when its lease lapses, and failed after too many attempts),
-- result expiry, page tokens and the callback outbox.
ALTER TABLE bulk_jobs ADD COLUMN api_version TEXT NOT NULL DEFAULT 'v8';
ALTER TABLE bulk_jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE bulk_jobs ADD COLUMN lease_until INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bulk_jobs ADD COLUMN after_id INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN last_id INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN finished_time INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN expires_time INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN page_token TEXT;
ALTER TABLE bulk_jobs ADD COLUMN callback_state TEXT;
ALTER TABLE bulk_jobs ADD COLUMN callback_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE bulk_jobs ADD COLUMN callback_next_ms INTEGER;
ALTER TABLE bulk_jobs ADD COLUMN callback_error TEXT;
CREATE UNIQUE INDEX bulk_jobs_page_token ON bulk_jobs (page_token);
CREATE INDEX bulk_jobs_callback_due ON bulk_jobs (callback_next_ms) WHERE callback_state = 'pending';
CREATE INDEX bulk_jobs_expiry ON bulk_jobs (expires_time) WHERE file_path IS NOT NULL;
CREATE INDEX bulk_jobs_active ON bulk_jobs (org_id, state);
