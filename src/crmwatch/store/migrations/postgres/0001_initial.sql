-- crmwatch schema, PostgreSQL. Times are epoch milliseconds (UTC).
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Id counters are handed out in blocks of 100 (block n: n*100 .. n*100+99).
CREATE SEQUENCE crm_id_blocks MINVALUE 1 START 1;

CREATE TABLE orgs (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    timezone TEXT NOT NULL,
    id_prefix BIGINT NOT NULL,
    zgid TEXT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    full_name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE TABLE modules (
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    api_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    definition TEXT NOT NULL,
    modified_time BIGINT NOT NULL,
    PRIMARY KEY (org_id, api_name)
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    org_id BIGINT NOT NULL REFERENCES orgs (id),
    user_id BIGINT NOT NULL REFERENCES users (id),
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    name TEXT NOT NULL,
    created_time BIGINT NOT NULL
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    client_id TEXT NOT NULL REFERENCES clients (client_id),
    parent_hash TEXT,
    scopes TEXT NOT NULL,
    created_time BIGINT NOT NULL,
    expires_time BIGINT,
    revoked_time BIGINT
);
CREATE INDEX tokens_parent ON tokens (parent_hash);

CREATE TABLE records (
    id BIGINT PRIMARY KEY,
    org_id BIGINT NOT NULL,
    module TEXT NOT NULL,
    parent_id BIGINT,
    name TEXT,
    data JSONB NOT NULL,
    created_time BIGINT NOT NULL,
    modified_time BIGINT NOT NULL
);
CREATE INDEX records_module ON records (org_id, module, id);
CREATE INDEX records_modified ON records (org_id, module, modified_time, id);
CREATE INDEX records_created ON records (org_id, module, created_time, id);
CREATE INDEX records_parent ON records (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE deleted_records (
    id BIGINT PRIMARY KEY,
    org_id BIGINT NOT NULL,
    module TEXT NOT NULL,
    name TEXT,
    created_by TEXT NOT NULL,
    deleted_by TEXT NOT NULL,
    deleted_time BIGINT NOT NULL
);
CREATE INDEX deleted_module ON deleted_records (org_id, module, deleted_time, id);

-- The change journal. Writers insert with seq NULL; the sequencer (one at a time, under an
-- advisory lock) numbers committed rows densely per org in commit order. A transaction that
-- is still running is invisible to it, so it is never passed over: its rows are numbered
-- after it commits, with the next numbers.
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    org_id BIGINT NOT NULL,
    seq BIGINT,
    xid XID8 NOT NULL DEFAULT pg_current_xact_id(),
    module TEXT NOT NULL,
    record_id BIGINT NOT NULL,
    operation TEXT NOT NULL,
    changed TEXT NOT NULL,
    vals TEXT NOT NULL,
    related TEXT NOT NULL,
    batch BIGINT NOT NULL,
    time BIGINT NOT NULL,
    user_id BIGINT NOT NULL
);
CREATE UNIQUE INDEX events_seq ON events (org_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX events_unnumbered ON events (id) WHERE seq IS NULL;
CREATE TABLE journal_heads (org_id BIGINT PRIMARY KEY, last_seq BIGINT NOT NULL);
