-- Notification channels, the dispatcher's cursor, deliveries and their attempts.
CREATE TABLE channels (
    org_id INTEGER NOT NULL,
    channel_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    expiry_time INTEGER NOT NULL,
    updated_time INTEGER NOT NULL,
    PRIMARY KEY (org_id, channel_id)
);
-- Where the dispatcher stands in each org's journal, and its view of the channels there
-- (each channel's doc as of `last_seq`, and its next per-channel notification number).
CREATE TABLE dispatch_cursors (
    org_id INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    view TEXT NOT NULL
);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id INTEGER NOT NULL,
    channel_id TEXT NOT NULL,
    notification_id TEXT NOT NULL UNIQUE,
    channel_seq INTEGER NOT NULL,
    module TEXT NOT NULL,
    operation TEXT NOT NULL,
    ids TEXT NOT NULL,
    affected TEXT,
    related INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_time INTEGER NOT NULL,
    next_attempt_time INTEGER NOT NULL,
    first_attempt_time INTEGER,
    updated_time INTEGER NOT NULL,
    last_status_code INTEGER,
    last_error TEXT,
    last_latency_ms REAL,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_time)
    WHERE status IN ('pending', 'retrying', 'sending');
CREATE INDEX deliveries_channel ON deliveries (org_id, channel_id, id);
CREATE TABLE delivery_attempts (
    delivery_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    started_time INTEGER NOT NULL,
    url TEXT NOT NULL,
    request_body TEXT NOT NULL,
    status_code INTEGER,
    latency_ms REAL,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE signing_secrets (
    org_id INTEGER NOT NULL,
    secret TEXT NOT NULL,
    created_time INTEGER NOT NULL,
    retired_time INTEGER,
    PRIMARY KEY (org_id, secret)
);
