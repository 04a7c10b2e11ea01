-- Record keys: every short scalar value of every record (strings and numbers of at most 255
-- characters, lower-cased), so that unique-field and duplicate checks are index lookups
-- instead of scans of the records' JSON. The triggers keep the table in step with `records`
-- whatever writes them; `store.records.KEY_MAX` must stay equal to the 255 below.
CREATE TABLE record_keys (
    record_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    org_id INTEGER NOT NULL,
    module TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (record_id, field)
) WITHOUT ROWID;
CREATE INDEX record_keys_lookup ON record_keys (org_id, module, field, value, record_id);

CREATE TRIGGER record_keys_insert AFTER INSERT ON records BEGIN
    INSERT INTO record_keys (record_id, field, org_id, module, value)
    SELECT new.id, j.key, new.org_id, new.module, lower(CAST(j.value AS TEXT))
    FROM json_each(new.data) j
    WHERE j.type IN ('text', 'integer', 'real') AND length(CAST(j.value AS TEXT)) <= 255;
END;

CREATE TRIGGER record_keys_update AFTER UPDATE OF data ON records BEGIN
    DELETE FROM record_keys WHERE record_id = old.id;
    INSERT INTO record_keys (record_id, field, org_id, module, value)
    SELECT new.id, j.key, new.org_id, new.module, lower(CAST(j.value AS TEXT))
    FROM json_each(new.data) j
    WHERE j.type IN ('text', 'integer', 'real') AND length(CAST(j.value AS TEXT)) <= 255;
END;

CREATE TRIGGER record_keys_delete AFTER DELETE ON records BEGIN
    DELETE FROM record_keys WHERE record_id = old.id;
END;

INSERT INTO record_keys (record_id, field, org_id, module, value)
SELECT r.id, j.key, r.org_id, r.module, lower(CAST(j.value AS TEXT))
FROM records r, json_each(r.data) j
WHERE j.type IN ('text', 'integer', 'real') AND length(CAST(j.value AS TEXT)) <= 255;
