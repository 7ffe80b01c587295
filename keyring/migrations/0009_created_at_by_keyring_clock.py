"""created_at is stamped by create_keys from the keyring clock, no longer by auto_now_add.

auto_now_add stamped this process's clock before the commit, and overrode any value given,
so a key could look older than leases granted before it existed (a false rule 4 breach in
the audit's replay). The column itself does not change: auto_now_add was never in the
database, so this alters Django's state only. As an AlterField it would also rebuild the
whole table on SQLite (embedded mode) to change nothing.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keyring', '0008_keylease_started_at'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='signingkey',
                    name='created_at',
                    field=models.DateTimeField(editable=False),
                ),
            ],
        ),
    ]
