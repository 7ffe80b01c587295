-- record_append_only on SQLite, which has no TRUNCATE: a record may be deleted only once the
-- keyring is empty (a reset deletes the keys first, in the same transaction).
CREATE TRIGGER record_append_only_on_delete
BEFORE DELETE ON records_record
WHEN EXISTS (SELECT 1 FROM keyring_signingkey)
BEGIN
    SELECT RAISE(ABORT, 'record_append_only: a record is never deleted (a reset empties the keyring first)');
END;
