-- Record keys: every short scalar value of every record (strings and numbers of at most 255
-- characters, lower-cased), so that unique-field and duplicate checks are index lookups
-- instead of scans of the records' JSON. The trigger keeps the table in step with `records`
-- whatever writes them; `store.records.KEY_MAX` must stay equal to the 255 below.
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
        SELECT NEW.id, j.key, NEW.org_id, NEW.module, lower(j.value #>> '{}')
        FROM jsonb_each(NEW.data) j
        WHERE jsonb_typeof(j.value) IN ('string', 'number')
          AND length(j.value #>> '{}') <= 255;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER record_keys AFTER INSERT OR DELETE OR UPDATE OF data ON records
FOR EACH ROW EXECUTE FUNCTION crm_record_keys();

INSERT INTO record_keys (record_id, field, org_id, module, value)
SELECT r.id, j.key, r.org_id, r.module, lower(j.value #>> '{}')
FROM records r, jsonb_each(r.data) j
WHERE jsonb_typeof(j.value) IN ('string', 'number') AND length(j.value #>> '{}') <= 255;
