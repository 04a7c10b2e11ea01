-- Notification channels, the dispatcher's cursor, deliveries and their attempts.
CREATE TABLE channels (
    org_id BIGINT NOT NULL,
    channel_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    expiry_time BIGINT NOT NULL,
    updated_time BIGINT NOT NULL,
    PRIMARY KEY (org_id, channel_id)
);
-- Where the dispatcher stands in each org's journal, and its view of the channels there
-- (each channel's doc as of `last_seq`, and its next per-channel notification number).
CREATE TABLE dispatch_cursors (
    org_id BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL,
    view TEXT NOT NULL
);
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL,
    channel_id TEXT NOT NULL,
    notification_id TEXT NOT NULL UNIQUE,
    channel_seq BIGINT NOT NULL,
    module TEXT NOT NULL,
    operation TEXT NOT NULL,
    ids TEXT NOT NULL,
    affected TEXT,
    related BOOLEAN NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_time BIGINT NOT NULL,
    next_attempt_time BIGINT NOT NULL,
    first_attempt_time BIGINT,
    updated_time BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error TEXT,
    last_latency_ms DOUBLE PRECISION,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_time)
    WHERE status IN ('pending', 'retrying', 'sending');
CREATE INDEX deliveries_channel ON deliveries (org_id, channel_id, id);
CREATE TABLE delivery_attempts (
    delivery_id BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    started_time BIGINT NOT NULL,
    url TEXT NOT NULL,
    request_body TEXT NOT NULL,
    status_code BIGINT,
    latency_ms DOUBLE PRECISION,
    error TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE TABLE signing_secrets (
    org_id BIGINT NOT NULL,
    secret TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    retired_time BIGINT,
    PRIMARY KEY (org_id, secret)
);
