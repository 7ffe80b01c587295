"""Rule 3 on embedded mode's SQLite: a signature names exactly the key and batch of its
lease (PostgreSQL checks it per statement, 0004; SQLite per row, under the same name)."""

from django.db import migrations

from signing.vendor import SQLITE, RunSQLFor

MATCHES_LEASE = """
    SELECT RAISE(ABORT, 'signature_matches_lease: the signature names no lease of its key and batch')
    WHERE NOT EXISTS (
        SELECT 1 FROM keyring_keylease l
        WHERE l.id = NEW.lease_id AND l.key_id = NEW.key_id AND l.batch_id = NEW.batch_id
    );
"""

FORWARD = f"""
CREATE TRIGGER signature_matches_lease_on_insert
BEFORE INSERT ON records_signature
BEGIN {MATCHES_LEASE} END;

CREATE TRIGGER signature_matches_lease_on_update
BEFORE UPDATE OF lease_id, key_id, batch_id ON records_signature
BEGIN {MATCHES_LEASE} END;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS signature_matches_lease_on_update;
DROP TRIGGER IF EXISTS signature_matches_lease_on_insert;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0004_signature_matches_lease_per_statement"),
        ("keyring", "0006_sqlite_triggers"),
    ]

    operations = [RunSQLFor(SQLITE, FORWARD, BACKWARD)]
