"""When `keys retire` took a key out for good; a retired key is never enabled again.

A column added (the data contract allows adding, not renaming): a key whose KEK is lost
had no way out, failing every readiness check and every `rotate-kek`.

The check is PostgreSQL's CHECK constraint, and on SQLite (embedded mode) two triggers of
its name: adding a CHECK there rebuilds keyring_signingkey, which the lease triggers'
bodies name, and SQLite refuses to drop a table a trigger still reads.
"""

from django.db import migrations, models

from kernel.sql_files import RunSQLFile
from kernel.vendor import RunSQLFor


class Migration(migrations.Migration):

    dependencies = [
        ('keyring', '0010_sql_files'),
    ]

    operations = [
        migrations.AddField(
            model_name='signingkey',
            name='retired_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        # The constraint in Django's state; the database gets it from the two below.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddConstraint(
                    model_name='signingkey',
                    constraint=models.CheckConstraint(condition=models.Q(('retired_at', None), ('enabled', False), _connector='OR'), name='signingkey_retired_is_disabled'),
                ),
            ],
        ),
        RunSQLFor(
            'postgresql',
            'ALTER TABLE keyring_signingkey ADD CONSTRAINT signingkey_retired_is_disabled'
            ' CHECK ((retired_at IS NULL OR NOT enabled))',
            reverse_sql='ALTER TABLE keyring_signingkey DROP CONSTRAINT signingkey_retired_is_disabled',
        ),
        RunSQLFile(
            'sqlite',
            'keyring',
            {
                'signingkey_retired_is_disabled_on_insert': '20f585f1233f2b7e4fd01787eed561b8d318b435d12e4c7922949831ef97cd3c',
                'signingkey_retired_is_disabled_on_update': 'af1ed7a3951c7c154f590d9830214acdf79c5672d01600bf2f6eefedbedd80ec',
            },
        ),
    ]
