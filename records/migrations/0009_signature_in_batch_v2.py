"""records_signature_in_batch_v2: the store's check that every signature lies in its batch's
range reads each batch it names by primary key (issue 17).

v1 (kept, called by nothing once this runs) joined the statement's signatures with the
whole signing_batch table, which PostgreSQL hashed: every store paid for every batch ever
planned. The trigger signature_in_batch_on_insert now calls v2.
"""

from django.db import migrations

from kernel.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [("records", "0008_sql_files"), ("signing", "0011_batch_pending_by_seq")]

    operations = [
        RunSQLFile(
            "postgresql",
            "records",
            {
                "records_signature_in_batch_v2": "5895ae09e30bf5aca19ad43f50486a83eadcba2a4b7b3d109423f02074d3a795",
                "signature_in_batch_on_insert": "8fc691b1ed7e0c905cd33ccc0b4ae51aface06327bcaf2787c70d762dffdcaae",
            },
        ),
    ]
