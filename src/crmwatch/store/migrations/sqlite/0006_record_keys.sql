-- Record keys: the values of each module's key fields (its unique fields and its default
-- duplicate-check fields, `Module.keyed_fields`), strings and numbers of at most 255
-- characters, lower-cased, so that unique-field and duplicate checks on them are index
-- lookups instead of scans of the records' JSON. `key_fields` lists the key fields of each
-- org's modules; the store keeps it in step with the catalog (`tenants.save_catalog`, and
-- at start for databases migrated from before it) and fills or empties record_keys when a
-- field joins or leaves it. The triggers keep record_keys in step with `records` whatever
-- writes them, at a cost of one lookup per key field and write (none for modules without).
-- `store.records.KEY_MAX` must stay equal to the 255 below.
CREATE TABLE key_fields (
    org_id INTEGER NOT NULL,
    module TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (org_id, module, field)
) WITHOUT ROWID;

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
    SELECT new.id, k.field, new.org_id, new.module,
           lower(CAST(json_extract(new.data, '$."' || k.field || '"') AS TEXT))
    FROM key_fields k
    WHERE k.org_id = new.org_id AND k.module = new.module
      AND json_type(new.data, '$."' || k.field || '"') IN ('text', 'integer', 'real')
      AND length(CAST(json_extract(new.data, '$."' || k.field || '"') AS TEXT)) <= 255;
END;

CREATE TRIGGER record_keys_update AFTER UPDATE OF data ON records BEGIN
    DELETE FROM record_keys WHERE record_id = old.id;
    INSERT INTO record_keys (record_id, field, org_id, module, value)
    SELECT new.id, k.field, new.org_id, new.module,
           lower(CAST(json_extract(new.data, '$."' || k.field || '"') AS TEXT))
    FROM key_fields k
    WHERE k.org_id = new.org_id AND k.module = new.module
      AND json_type(new.data, '$."' || k.field || '"') IN ('text', 'integer', 'real')
      AND length(CAST(json_extract(new.data, '$."' || k.field || '"') AS TEXT)) <= 255;
END;

CREATE TRIGGER record_keys_delete AFTER DELETE ON records BEGIN
    DELETE FROM record_keys WHERE record_id = old.id;
END;
