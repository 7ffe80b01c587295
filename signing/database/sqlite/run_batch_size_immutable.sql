-- Rule 5 on SQLite: a run's batch size never changes after it is created.
CREATE TRIGGER run_batch_size_immutable
BEFORE UPDATE OF batch_size ON signing_signingrun
WHEN NEW.batch_size IS NOT OLD.batch_size
BEGIN
    SELECT RAISE(ABORT, 'run_batch_size_immutable: a run''s batch size is fixed for the whole run');
END;
