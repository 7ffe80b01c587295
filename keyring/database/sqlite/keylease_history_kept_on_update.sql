-- keylease_history_kept on SQLite: a lease's key, batch, token and start never change.
CREATE TRIGGER keylease_history_kept_on_update
BEFORE UPDATE OF id, key_id, batch_id, token, acquired_at ON keyring_keylease
WHEN OLD.id IS NOT NEW.id OR OLD.key_id IS NOT NEW.key_id OR OLD.batch_id IS NOT NEW.batch_id
  OR OLD.token IS NOT NEW.token OR OLD.acquired_at IS NOT NEW.acquired_at
BEGIN
    SELECT RAISE(ABORT, 'keylease_history_kept: a lease''s key, batch, token and start never change');
END;
