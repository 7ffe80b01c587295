-- keylease_history_kept: no lease is ever deleted (keyring_lease_history_kept.sql).
CREATE OR REPLACE TRIGGER keylease_history_kept_on_delete
    BEFORE DELETE ON keyring_keylease
    FOR EACH ROW EXECUTE FUNCTION keyring_lease_history_kept();
