-- Record keys: the values of each module's key fields (its unique fields and its default
-- duplicate-check fields, `Module.keyed_fields`), strings and numbers of at most 255
-- characters, lower-cased, so that unique-field and duplicate checks on them are index
-- lookups instead of scans of the records' JSON. `key_fields` lists the key fields of each
-- org's modules; the store keeps it in step with the catalog (`tenants.save_catalog`, and
-- at start for databases migrated from before it) and fills or empties record_keys when a
-- field joins or leaves it. The trigger keeps record_keys in step with `records` whatever
-- writes them, at a cost of one lookup per key field and write (none for modules without).
-- `store.records.KEY_MAX` must stay equal to the 255 below.
CREATE TABLE key_fields (
    org_id BIGINT NOT NULL,
    module TEXT NOT NULL,
    field TEXT NOT NULL,
    PRIMARY KEY (org_id, module, field)
);

CREATE TABLE record_keys (
    record_id BIGINT NOT NULL,
    field TEXT NOT NULL,
    org_id BIGINT NOT NULL,
    module TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (record_id, field)
);
CREATE INDEX record_keys_lookup ON record_keys (org_id, module, field, value, record_id);

CREATE FUNCTION crm_record_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM record_keys WHERE record_id = OLD.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO record_keys (record_id, field, org_id, module, value)
        SELECT NEW.id, k.field, NEW.org_id, NEW.module, lower(NEW.data ->> k.field)
        FROM key_fields k
        WHERE k.org_id = NEW.org_id AND k.module = NEW.module
          AND jsonb_typeof(NEW.data -> k.field) IN ('string', 'number')
          AND length(NEW.data ->> k.field) <= 255;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER record_keys AFTER INSERT OR DELETE OR UPDATE OF data ON records
FOR EACH ROW EXECUTE FUNCTION crm_record_keys();
