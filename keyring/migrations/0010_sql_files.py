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
            {
                "keyring_lock": "17fcbad352dc18a590cef48bce4325629a6ed9a8dc6c5f594226033ba16f5999",
                "keyring_lease_lru_key": "2719e17f5fd5e79af5a03d9dc6bd8e5d6beb8b86df8553c971b1c873534c95f3",
                "keyring_release_lease": "d74e9e4abfc2abdb17a7bc3353f6eb3de44617a9871045af4fb0e9b76fe72360",
                "keyring_lease_history_kept": "0dc9ccbbde41706717d2d7ac4116b442db9b956bb881e2575959dddb23b77c71",
                "keylease_history_kept_on_delete": "542ebd6e7b3ab892eeeaebf93cf511145695f5fa7b9bcd6353e1cc192fcd646d",
                "keylease_history_kept_on_update": "941459fbf62010342e33a372e038cb432cb29a912798c3d9f68470054ef4b2fd",
            },
        ),
        RunSQLFile(
            "sqlite",
            "keyring",
            {
                "keylease_no_overlap_per_key_on_insert": "1e2a8dd63e415d3ab99b9ea7e810f0922582f295f43019a532c43727ea10ba72",
                "keylease_no_overlap_per_key_on_update": "fece3c7ffdbc87bbe88f5be0cd8d3588c1feccb3249fe370fc8983baf119ce39",
                "keylease_history_kept_on_delete": "e971b6ec0aca4ec541a8700286e7e8b9a4c577ad1568cb4a205aeb40274c0b02",
                "keylease_history_kept_on_update": "3c43bc5142ead1fcd3bc1490e43c25dd9249401a21aa340574741ecf27e93423",
            },
        ),
    ]
