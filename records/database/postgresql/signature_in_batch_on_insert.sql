-- signature_in_batch (records_signature_in_batch_v2.sql), on every INSERT statement.
CREATE OR REPLACE TRIGGER signature_in_batch_on_insert
    AFTER INSERT ON records_signature REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION records_signature_in_batch_v2();
