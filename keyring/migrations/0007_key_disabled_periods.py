"""Every time a key was out of the keyring, so a key enabled again keeps its history.

Keys disabled already get their open period from `disabled_at`.
"""

import django.db.models.deletion
from django.db import migrations, models


def open_periods_of_disabled_keys(apps, schema_editor):
    SigningKey = apps.get_model("keyring", "SigningKey")
    KeyDisabledPeriod = apps.get_model("keyring", "KeyDisabledPeriod")
    KeyDisabledPeriod.objects.bulk_create(
        KeyDisabledPeriod(key_id=key_id, disabled_at=disabled_at)
        for key_id, disabled_at in SigningKey.objects.exclude(disabled_at=None).values_list(
            "id", "disabled_at"
        )
    )


class Migration(migrations.Migration):

    dependencies = [
        ('keyring', '0006_sqlite_triggers'),
    ]

    operations = [
        migrations.CreateModel(
            name='KeyDisabledPeriod',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('disabled_at', models.DateTimeField()),
                ('enabled_at', models.DateTimeField(blank=True, null=True)),
                ('key', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='disabled_periods', to='keyring.signingkey')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('key', 'disabled_at'), name='disabledperiod_key_start'), models.UniqueConstraint(condition=models.Q(('enabled_at', None)), fields=('key',), name='disabledperiod_one_open_per_key'), models.CheckConstraint(condition=models.Q(('enabled_at', None), ('enabled_at__gt', models.F('disabled_at')), _connector='OR'), name='disabledperiod_ends_after_it_starts')],
            },
        ),
        migrations.RunPython(open_periods_of_disabled_keys, migrations.RunPython.noop),
    ]
