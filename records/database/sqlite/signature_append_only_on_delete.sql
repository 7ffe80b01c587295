-- signature_append_only on SQLite: deleted only once the keyring is empty (as records).
CREATE TRIGGER signature_append_only_on_delete
BEFORE DELETE ON records_signature
WHEN EXISTS (SELECT 1 FROM keyring_signingkey)
BEGIN
    SELECT RAISE(ABORT, 'signature_append_only: a signature is never deleted (a reset empties the keyring first)');
END;
