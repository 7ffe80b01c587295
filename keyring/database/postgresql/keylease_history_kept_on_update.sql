-- keylease_history_kept: a lease's key, batch, token and start never change.
CREATE OR REPLACE TRIGGER keylease_history_kept_on_update
    BEFORE UPDATE OF id, key_id, batch_id, token, acquired_at ON keyring_keylease
    FOR EACH ROW
    WHEN (
        (OLD.id, OLD.key_id, OLD.batch_id, OLD.token, OLD.acquired_at)
        IS DISTINCT FROM (NEW.id, NEW.key_id, NEW.batch_id, NEW.token, NEW.acquired_at)
    )
    EXECUTE FUNCTION keyring_lease_history_kept();
