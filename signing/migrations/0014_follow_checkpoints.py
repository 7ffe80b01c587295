"""Follow runs' signed checkpoints (issue 18, point 5): signing_checkpoint, one row per
(run, batches), "the first `batches` batches of run `run_id` have this root", signed by
the key of the lease it names (signing.runs.checkpoints). A new table only: on SQLite no
existing table is rebuilt, so no trigger needs loading again."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("keyring", "0010_sql_files"),
        ("signing", "0013_follow_runs"),
    ]

    operations = [
        migrations.CreateModel(
            name="Checkpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("batches", models.PositiveIntegerField()),
                ("merkle_root", models.BinaryField()),
                ("signature", models.BinaryField()),
                ("signed_at", models.DateTimeField()),
                (
                    "key",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="checkpoints",
                        to="keyring.signingkey",
                    ),
                ),
                (
                    "lease",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="checkpoints",
                        to="keyring.keylease",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="checkpoints",
                        to="signing.signingrun",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("run", "batches"), name="checkpoint_batches_unique_per_run"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("batches__gt", 0)), name="checkpoint_batches_positive"
                    ),
                ],
            },
        ),
    ]
