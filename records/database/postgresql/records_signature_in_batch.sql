-- Every signature a statement writes names a record inside its batch's range
-- [first_record_id, last_record_id].
CREATE OR REPLACE FUNCTION records_signature_in_batch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stray record;
BEGIN
    SELECT w.record_id, w.batch_id INTO stray
    FROM written w LEFT JOIN signing_batch b ON b.id = w.batch_id
    WHERE b.id IS NULL OR w.record_id NOT BETWEEN b.first_record_id AND b.last_record_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the signature of record % names batch %, whose range does not hold it',
            stray.record_id, stray.batch_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'signature_in_batch',
                  TABLE = 'records_signature';
    END IF;
    RETURN NULL;
END;
$$;
