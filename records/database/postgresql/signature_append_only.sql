-- signature_append_only (records_append_only.sql).
CREATE OR REPLACE TRIGGER signature_append_only
    BEFORE UPDATE OR DELETE ON records_signature
    FOR EACH ROW EXECUTE FUNCTION records_append_only('signature_append_only');
