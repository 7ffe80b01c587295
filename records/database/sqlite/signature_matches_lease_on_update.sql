-- Rule 3 on SQLite, per row, on updates.
CREATE TRIGGER signature_matches_lease_on_update
BEFORE UPDATE OF lease_id, key_id, batch_id ON records_signature
BEGIN
    SELECT RAISE(ABORT, 'signature_matches_lease: the signature names no lease of its key and batch')
    WHERE NOT EXISTS (
        SELECT 1 FROM keyring_keylease l
        WHERE l.id = NEW.lease_id AND l.key_id = NEW.key_id AND l.batch_id = NEW.batch_id
    );
END;
