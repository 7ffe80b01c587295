-- Rule 3: a signature names exactly the key and batch of its lease. Checked once per statement
-- over the rows written (a composite foreign key looked the lease up once per row); the error
-- keeps the old constraint's name and SQLSTATE 23503.
CREATE OR REPLACE FUNCTION records_signature_matches_lease() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stray record;
BEGIN
    SELECT s.lease_id, s.key_id, s.batch_id INTO stray
    FROM (SELECT DISTINCT lease_id, key_id, batch_id FROM written) s
    WHERE NOT EXISTS (
        SELECT 1 FROM keyring_keylease l
        WHERE l.id = s.lease_id AND l.key_id = s.key_id AND l.batch_id = s.batch_id
    )
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'signature names lease %, key % and batch %, which is no lease''s',
            stray.lease_id, stray.key_id, stray.batch_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'signature_matches_lease',
                  TABLE = 'records_signature';
    END IF;
    RETURN NULL;
END;
$$;
