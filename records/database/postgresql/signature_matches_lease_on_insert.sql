-- Rule 3 (records_signature_matches_lease.sql), on every INSERT statement.
CREATE OR REPLACE TRIGGER signature_matches_lease_on_insert
    AFTER INSERT ON records_signature REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION records_signature_matches_lease();
