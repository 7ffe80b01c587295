"""When a key was disabled: stamped by `keys disable`, read by the audit's LRU replay."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('keyring', '0004_lease_history_kept'),
    ]

    operations = [
        migrations.AddField(
            model_name='signingkey',
            name='disabled_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddConstraint(
            model_name='signingkey',
            constraint=models.CheckConstraint(condition=models.Q(('enabled', False), ('disabled_at', None), _connector='OR'), name='signingkey_enabled_has_no_disabled_at'),
        ),
    ]
