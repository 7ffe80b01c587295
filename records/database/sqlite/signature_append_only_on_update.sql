-- signature_append_only on SQLite: a signature is never updated.
CREATE TRIGGER signature_append_only_on_update
BEFORE UPDATE ON records_signature
BEGIN
    SELECT RAISE(ABORT, 'signature_append_only: a signature is never updated');
END;
