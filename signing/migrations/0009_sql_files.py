"""The signing app's functions and triggers, (re)created from signing/database/
(kernel.sql_files).

Their definitions now live in one file each; this loads every one of them, unchanged, so a
database of any earlier release ends up with exactly what the files say. That includes
signing_claim_batches: 0004 was edited in place after it first landed (its in-flight count
went from leased batches to held keys), so a database migrated before that edit kept the
old body until this migration replaced it.
"""

from django.db import migrations

from kernel.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [("signing", "0008_analyze_filled_function")]

    operations = [
        RunSQLFile(
            "postgresql",
            "signing",
            [
                "signing_run_batch_size_immutable",
                "run_batch_size_immutable",
                "signing_claim_batches",
                "signing_claim_batches_v2",
                "signing_analyze_filled_v1",
            ],
        ),
        RunSQLFile("sqlite", "signing", ["run_batch_size_immutable"]),
    ]
