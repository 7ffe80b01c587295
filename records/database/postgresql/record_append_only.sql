-- record_append_only (records_append_only.sql).
CREATE OR REPLACE TRIGGER record_append_only
    BEFORE UPDATE OR DELETE ON records_record
    FOR EACH ROW EXECUTE FUNCTION records_append_only('record_append_only');
