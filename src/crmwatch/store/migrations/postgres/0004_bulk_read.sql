-- Bulk Read jobs (POST /crm/bulk/{v}/read): ADDED -> IN PROGRESS -> COMPLETED | FAILURE.
-- `plan` is what the export needs (columns with their types, field types for the
-- criteria, the org's time zone), fixed when the job is added.
CREATE TABLE bulk_jobs (
    id BIGINT PRIMARY KEY,
    org_id BIGINT NOT NULL,
    module TEXT NOT NULL,
    query TEXT NOT NULL,
    file_type TEXT NOT NULL,
    callback TEXT,
    state TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    plan TEXT NOT NULL,
    page INTEGER NOT NULL,
    per_page INTEGER NOT NULL,
    count BIGINT,
    more_records INTEGER,
    file_path TEXT,
    error TEXT,
    updated_time BIGINT NOT NULL
);
CREATE INDEX bulk_jobs_state ON bulk_jobs (state, id);
