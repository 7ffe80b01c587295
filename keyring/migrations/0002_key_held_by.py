"""Keys say which lease holds them (held_by), so the LRU pick reads 100 key rows, not the
whole lease history; and the keyring's hot rows get HOT updates.

Profiled at 100k records, batch size 10: the pick probed a partial index of open leases
that kept one dead entry per lease ever released until vacuum reached it, so each pick
grew slower through the run (1 ms after 10,000 leases). Dropping the index on
last_used_at, and leaving held_by unindexed, lets PostgreSQL update a key in place (with
room on its page: fillfactor 50); the lease's key_id is served by the (key_id, token) index.
"""

import django.db.models.deletion
from django.db import migrations, models

from signing.vendor import POSTGRESQL, RunSQLFor


class Migration(migrations.Migration):

    dependencies = [
        ('keyring', '0001_initial'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='keylease',
            name='keylease_open_idx',
        ),
        migrations.RemoveIndex(
            model_name='signingkey',
            name='signingkey_lru_idx',
        ),
        migrations.AddField(
            model_name='signingkey',
            name='held_by',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='keyring.keylease'),
        ),
        migrations.AlterField(
            model_name='keylease',
            name='key',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='leases', to='keyring.signingkey'),
        ),
        RunSQLFor(
            POSTGRESQL,
            """
            UPDATE keyring_signingkey k SET held_by_id = l.id
            FROM keyring_keylease l WHERE l.key_id = k.id AND l.released_at IS NULL;
            ALTER TABLE keyring_signingkey SET (fillfactor = 50);
            """,
            "ALTER TABLE keyring_signingkey RESET (fillfactor)",
        ),
    ]
