"""Follow runs (issue 18): a run that stays active and signs records as they arrive.

SigningRun gains `follow`, `followed_through` and `stop_requested_at`; Batch gains `waiting`
(how many records were waiting when it was cut: the audit's rule 5 for follow runs). And
signing_lock_record_inserts_v1, the owner's function that lets the app role wait out every
record insert in flight before a cut (its file says why).

On SQLite, adding a NOT NULL column rebuilds signing_signingrun, which drops its trigger:
run_batch_size_immutable is loaded again from its file, unchanged.
"""

from django.db import migrations, models

from kernel.sql_files import RunSQLFile
from kernel.vendor import POSTGRESQL, RunSQLFor

BACKWARD = "DROP FUNCTION IF EXISTS signing_lock_record_inserts_v1();"


class Migration(migrations.Migration):
    dependencies = [("signing", "0012_merkle_roots")]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="waiting",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="signingrun",
            name="follow",
            field=models.BooleanField(db_default=False, default=False, editable=False),
        ),
        migrations.AddField(
            model_name="signingrun",
            name="followed_through",
            field=models.BigIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.AddField(
            model_name="signingrun",
            name="stop_requested_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        RunSQLFile(
            "postgresql",
            "signing",
            {
                "signing_lock_record_inserts_v1": "f07851e6b8954930d5148663f0eed916db3557487b249b92cb8978d2e999e5c7"
            },
        ),
        RunSQLFor(POSTGRESQL, migrations.RunSQL.noop, BACKWARD),
        RunSQLFile(
            "sqlite",
            "signing",
            {"run_batch_size_immutable": "757f41a236e4cf56a064a2e25fbd9ab1e7c6f640ef551105ff1916992f8daf0d"},
        ),
    ]
