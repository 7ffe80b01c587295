"""Rule 3 in the database: a signature names exactly the key and batch of its lease."""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0001_initial"),
        ("keyring", "0001_initial"),
    ]

    operations = [
        RunSQLFor(
            POSTGRESQL,
            """
            ALTER TABLE records_signature ADD CONSTRAINT signature_matches_lease
                FOREIGN KEY (lease_id, key_id, batch_id)
                REFERENCES keyring_keylease (id, key_id, batch_id)
                DEFERRABLE INITIALLY DEFERRED
            """,
            "ALTER TABLE records_signature DROP CONSTRAINT signature_matches_lease",
        ),
    ]
