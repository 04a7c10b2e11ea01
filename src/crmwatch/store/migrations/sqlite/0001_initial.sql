-- crmwatch schema, SQLite. Times are epoch milliseconds (UTC); JSON columns hold text.
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters (name, value) VALUES ('ids', 0);

CREATE TABLE orgs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    timezone TEXT NOT NULL,
    id_prefix INTEGER NOT NULL,
    zgid TEXT NOT NULL,
    created_time INTEGER NOT NULL
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    full_name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_time INTEGER NOT NULL
);
CREATE TABLE modules (
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    api_name TEXT NOT NULL,
    position INTEGER NOT NULL,
    definition TEXT NOT NULL,
    modified_time INTEGER NOT NULL,
    PRIMARY KEY (org_id, api_name)
);
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES orgs (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    name TEXT NOT NULL,
    created_time INTEGER NOT NULL
);
CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- refresh | access | grant
    client_id TEXT NOT NULL REFERENCES clients (client_id),
    parent_hash TEXT,              -- access tokens: the refresh token they came from
    scopes TEXT NOT NULL,
    created_time INTEGER NOT NULL,
    expires_time INTEGER,          -- NULL: never
    revoked_time INTEGER
);
CREATE INDEX tokens_parent ON tokens (parent_hash);

CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL,
    module TEXT NOT NULL,
    parent_id INTEGER,
    name TEXT,
    data TEXT NOT NULL,
    created_time INTEGER NOT NULL,
    modified_time INTEGER NOT NULL
);
CREATE INDEX records_module ON records (org_id, module, id);
CREATE INDEX records_modified ON records (org_id, module, modified_time, id);
CREATE INDEX records_created ON records (org_id, module, created_time, id);
CREATE INDEX records_parent ON records (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE deleted_records (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL,
    module TEXT NOT NULL,
    name TEXT,
    created_by TEXT NOT NULL,
    deleted_by TEXT NOT NULL,
    deleted_time INTEGER NOT NULL
);
CREATE INDEX deleted_module ON deleted_records (org_id, module, deleted_time, id);

-- The change journal: one row per committed change, numbered densely per org in commit
-- order (the single writer assigns seq inside the writing transaction).
CREATE TABLE events (
    org_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    module TEXT NOT NULL,
    record_id INTEGER NOT NULL,
    operation TEXT NOT NULL,
    changed TEXT NOT NULL,
    vals TEXT NOT NULL,
    related TEXT NOT NULL,
    batch BIGINT NOT NULL,
    time INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (org_id, seq)
) WITHOUT ROWID;
