-- keylease_history_kept on SQLite, which has no TRUNCATE: a lease may be deleted only once its
-- key is gone (a reset, or a test's flush, deletes the keys first in the same transaction).
CREATE TRIGGER keylease_history_kept_on_delete
BEFORE DELETE ON keyring_keylease
WHEN EXISTS (SELECT 1 FROM keyring_signingkey WHERE id = OLD.key_id)
BEGIN
    SELECT RAISE(ABORT, 'keylease_history_kept: a lease is history and cannot be deleted');
END;
