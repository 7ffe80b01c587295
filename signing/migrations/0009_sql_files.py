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
            {
                "signing_run_batch_size_immutable": "89e63ea689b04270d4dcaf4587cc35c0e8cdc5868120e03ff6e989b0da23314a",
                "run_batch_size_immutable": "ec4f79deeba006cc485f823597413c20ffad01fb2fe1ffb9d7a9ae2bdf16086d",
                "signing_claim_batches": "31a76d759e020a8106cf8d83a6bad199ec3c9ce2d575b6ec66602dbbf3395fe7",
                "signing_claim_batches_v2": "f1d2d3aab28742356a7389d1a36e1fbaac372bf9cacf75702231b0e7627d3b21",
                "signing_analyze_filled_v1": "9a7185900e38714bd8c434dfeec645bd8b7af33829b82d453bf75d28f8032ec8",
            },
        ),
        RunSQLFile(
            "sqlite",
            "signing",
            {"run_batch_size_immutable": "757f41a236e4cf56a064a2e25fbd9ab1e7c6f640ef551105ff1916992f8daf0d"},
        ),
    ]
