-- Rule 3 (records_signature_matches_lease.sql), on every UPDATE statement.
CREATE OR REPLACE TRIGGER signature_matches_lease_on_update
    AFTER UPDATE ON records_signature REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION records_signature_matches_lease();
