"""Rule 5 on embedded mode's SQLite: a run's batch size never changes (0002 on PostgreSQL)."""

from django.db import migrations

from signing.vendor import SQLITE, RunSQLFor

FORWARD = """
CREATE TRIGGER run_batch_size_immutable
BEFORE UPDATE OF batch_size ON signing_signingrun
WHEN NEW.batch_size IS NOT OLD.batch_size
BEGIN
    SELECT RAISE(ABORT, 'run_batch_size_immutable: a run''s batch size is fixed for the whole run');
END;
"""

BACKWARD = "DROP TRIGGER IF EXISTS run_batch_size_immutable;"


class Migration(migrations.Migration):
    dependencies = [("signing", "0004_claim_batches_function")]

    operations = [RunSQLFor(SQLITE, FORWARD, BACKWARD)]
