"""The records' functions and triggers, (re)created from records/database/ (kernel.sql_files).

Their definitions now live in one file each; this loads every one of them, unchanged, so a
database of any earlier release ends up with exactly what the files say.
"""

from django.db import migrations

from kernel.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [("records", "0007_sqlite_append_only_and_signature_in_batch")]

    operations = [
        RunSQLFile(
            "postgresql",
            "records",
            [
                "records_signature_matches_lease",
                "signature_matches_lease_on_insert",
                "signature_matches_lease_on_update",
                "records_append_only",
                "record_append_only",
                "signature_append_only",
                "records_signature_in_batch",
                "signature_in_batch_on_insert",
            ],
        ),
        RunSQLFile(
            "sqlite",
            "records",
            [
                "signature_matches_lease_on_insert",
                "signature_matches_lease_on_update",
                "record_append_only_on_update",
                "record_append_only_on_delete",
                "signature_append_only_on_update",
                "signature_append_only_on_delete",
                "signature_in_batch_on_insert",
            ],
        ),
    ]
