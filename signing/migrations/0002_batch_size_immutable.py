"""Rule 5 in the database: a run's batch size can never change after it is created."""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor

FORWARD = """
CREATE FUNCTION signing_run_batch_size_immutable() RETURNS trigger AS $$
BEGIN
    IF NEW.batch_size IS DISTINCT FROM OLD.batch_size THEN
        RAISE EXCEPTION 'batch_size of run % is fixed at % for the whole run', OLD.id, OLD.batch_size
            USING ERRCODE = 'check_violation', CONSTRAINT = 'run_batch_size_immutable';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER run_batch_size_immutable
    BEFORE UPDATE OF batch_size ON signing_signingrun
    FOR EACH ROW EXECUTE FUNCTION signing_run_batch_size_immutable();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS run_batch_size_immutable ON signing_signingrun;
DROP FUNCTION IF EXISTS signing_run_batch_size_immutable();
"""


class Migration(migrations.Migration):
    dependencies = [("signing", "0001_initial")]

    operations = [RunSQLFor(POSTGRESQL, FORWARD, BACKWARD)]
