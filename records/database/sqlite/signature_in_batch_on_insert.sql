-- signature_in_batch on SQLite, per row: the record lies inside its batch's range.
CREATE TRIGGER signature_in_batch_on_insert
BEFORE INSERT ON records_signature
WHEN NOT EXISTS (
    SELECT 1 FROM signing_batch b
    WHERE b.id = NEW.batch_id AND NEW.record_id BETWEEN b.first_record_id AND b.last_record_id
)
BEGIN
    SELECT RAISE(ABORT, 'signature_in_batch: the signature names a batch whose range does not hold its record');
END;
