"""SigningRun gains `planned_through` (audit21): the highest record id committed when an
ordinary run was planned, so the audit can hold a completed run to every record its plan saw
unsigned, not only to those inside its batches' ranges (a plan that dropped its last batch,
or a run completed with none while records waited, left records outside every range).

Nullable with no default: a run planned before this migration has none (the audit keeps its
batch-range check for it), and SQLite adds the column in place (ALTER TABLE ADD COLUMN)
instead of rebuilding the table, which would drop its triggers. Adding a column is allowed by
the data contract; no function or trigger changes (the plan is a statement, not a function).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("signing", "0014_follow_checkpoints")]

    operations = [
        migrations.AddField(
            model_name="signingrun",
            name="planned_through",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
    ]
