-- Every signature a statement writes names a record inside its batch's range
-- [first_record_id, last_record_id].
--
-- v2 (issue 17): each batch the statement names is read by its primary key, once. v1 joined
-- the statement's rows with signing_batch, and PostgreSQL hashed the whole table for it: a
-- cost that grew with every batch ever planned, paid by every store.
CREATE OR REPLACE FUNCTION records_signature_in_batch_v2() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    named record;
    batch record;
    stray bigint;
BEGIN
    FOR named IN
        SELECT w.batch_id, min(w.record_id) AS lowest, max(w.record_id) AS highest
        FROM written w GROUP BY w.batch_id
    LOOP
        SELECT b.first_record_id, b.last_record_id INTO batch
        FROM signing_batch b WHERE b.id = named.batch_id;
        IF NOT FOUND THEN
            stray := named.lowest;  -- no such batch: any of its signatures is stray
        ELSIF named.lowest < batch.first_record_id OR named.highest > batch.last_record_id THEN
            SELECT w.record_id INTO stray FROM written w
            WHERE w.batch_id = named.batch_id
              AND w.record_id NOT BETWEEN batch.first_record_id AND batch.last_record_id
            LIMIT 1;
        END IF;
        IF stray IS NOT NULL THEN
            RAISE EXCEPTION 'the signature of record % names batch %, whose range does not hold it',
                stray, named.batch_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'signature_in_batch',
                      TABLE = 'records_signature';
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
