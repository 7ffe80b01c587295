-- Rule 5 (signing_run_batch_size_immutable.sql).
CREATE OR REPLACE TRIGGER run_batch_size_immutable
    BEFORE UPDATE OF batch_size ON signing_signingrun
    FOR EACH ROW EXECUTE FUNCTION signing_run_batch_size_immutable();
