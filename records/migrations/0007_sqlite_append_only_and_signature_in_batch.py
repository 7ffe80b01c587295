"""0006 on embedded mode's SQLite: the same names, as row triggers.

SQLite has no TRUNCATE, so resets must delete: as for the lease history (keyring 0006), a
record or a signature may be deleted only once the keyring is empty. A reset (and a test's
flush) deletes the keys first, in the same transaction; nothing else deletes keys.
"""

from django.db import migrations

from signing.vendor import SQLITE, RunSQLFor

FORWARD = """
CREATE TRIGGER record_append_only_on_update
BEFORE UPDATE ON records_record
BEGIN
    SELECT RAISE(ABORT, 'record_append_only: a record is never updated');
END;

CREATE TRIGGER record_append_only_on_delete
BEFORE DELETE ON records_record
WHEN EXISTS (SELECT 1 FROM keyring_signingkey)
BEGIN
    SELECT RAISE(ABORT, 'record_append_only: a record is never deleted (a reset empties the keyring first)');
END;

CREATE TRIGGER signature_append_only_on_update
BEFORE UPDATE ON records_signature
BEGIN
    SELECT RAISE(ABORT, 'signature_append_only: a signature is never updated');
END;

CREATE TRIGGER signature_append_only_on_delete
BEFORE DELETE ON records_signature
WHEN EXISTS (SELECT 1 FROM keyring_signingkey)
BEGIN
    SELECT RAISE(ABORT, 'signature_append_only: a signature is never deleted (a reset empties the keyring first)');
END;

CREATE TRIGGER signature_in_batch_on_insert
BEFORE INSERT ON records_signature
WHEN NOT EXISTS (
    SELECT 1 FROM signing_batch b
    WHERE b.id = NEW.batch_id AND NEW.record_id BETWEEN b.first_record_id AND b.last_record_id
)
BEGIN
    SELECT RAISE(ABORT, 'signature_in_batch: the signature names a batch whose range does not hold its record');
END;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS signature_in_batch_on_insert;
DROP TRIGGER IF EXISTS signature_append_only_on_delete;
DROP TRIGGER IF EXISTS signature_append_only_on_update;
DROP TRIGGER IF EXISTS record_append_only_on_delete;
DROP TRIGGER IF EXISTS record_append_only_on_update;
"""


class Migration(migrations.Migration):
    dependencies = [("records", "0006_append_only_and_signature_in_batch")]

    operations = [RunSQLFor(SQLITE, FORWARD, BACKWARD)]
