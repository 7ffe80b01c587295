"""The keyring's functions and triggers, (re)created from keyring/database/ (kernel.sql_files).

Their definitions now live in one file each; this loads every one of them, unchanged, so a
database of any earlier release ends up with exactly what the files say.
"""

from django.db import migrations

from kernel.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [("keyring", "0009_created_at_by_keyring_clock")]

    operations = [
        RunSQLFile(
            "postgresql",
            "keyring",
            [
                "keyring_lock",
                "keyring_lease_lru_key",
                "keyring_release_lease",
                "keyring_lease_history_kept",
                "keylease_history_kept_on_delete",
                "keylease_history_kept_on_update",
            ],
        ),
        RunSQLFile(
            "sqlite",
            "keyring",
            [
                "keylease_no_overlap_per_key_on_insert",
                "keylease_no_overlap_per_key_on_update",
                "keylease_history_kept_on_delete",
                "keylease_history_kept_on_update",
            ],
        ),
    ]
