-- Rule 5: a run's batch size never changes after it is created.
CREATE OR REPLACE FUNCTION signing_run_batch_size_immutable() RETURNS trigger AS $$
BEGIN
    IF NEW.batch_size IS DISTINCT FROM OLD.batch_size THEN
        RAISE EXCEPTION 'batch_size of run % is fixed at % for the whole run', OLD.id, OLD.batch_size
            USING ERRCODE = 'check_violation', CONSTRAINT = 'run_batch_size_immutable';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
