"""The records' functions and triggers, (re)created from records/database/ (kernel.sql_files).

Their definitions now live in one file each; this loads every one of them, unchanged, so a
database of any earlier release ends up with exactly what the files say.
"""

from django.db import migrations

from kernel.sql_files import RunSQLFile


class Migration(migrations.Migration):
    dependencies = [("records", "0007_sqlite_append_only_and_signature_in_batch")]

    operations = [
        RunSQLFile(
            "postgresql",
            "records",
            {
                "records_signature_matches_lease": "82d1b577c9a471633a74f548efe31e2160fb4cc55afc8105b991d697b6ccd70f",
                "signature_matches_lease_on_insert": "4e88a40132350811736400e68f481c077a4ca1e3c48cfff47a3e4ac67590af16",
                "signature_matches_lease_on_update": "bd61781cdb5167ef16634364bf6da6d07002db83386956cc5ccbefb9fc73079e",
                "records_append_only": "3578ab449f0014f9ae68e7c43f74abbeedc1eea356175dbb9d5a06dfb18c999e",
                "record_append_only": "18e000dcc4f30e0b8957cb6988471fcf2b90a905fdcfed659cf0c8e5ce1d6ae6",
                "signature_append_only": "b1898860787c476351852e3d845d61ed6e597cb234d6f8086357ec1c07703633",
                "records_signature_in_batch": "d884887b9c5a10958f1aedcf129131cb60f6eadd1a5c88541bf969adef9b01a6",
                "signature_in_batch_on_insert": "cc7b36d27478a089afdfa13f7113b4a4820725280850b3204cd0ee484baaf40b",
            },
        ),
        RunSQLFile(
            "sqlite",
            "records",
            {
                "signature_matches_lease_on_insert": "692087e777f626433b4982b0d536306abaceb8b94b7411d24c23416facc543c3",
                "signature_matches_lease_on_update": "3a09b33f30f231eccd7c9b2e4fbf4041e54aad2fa2ec38bcd2092486bb73fe7f",
                "record_append_only_on_update": "02450ee78966373e98e6f9a50f235e907f734e876fd9d48ac4a7130b0e96f1b5",
                "record_append_only_on_delete": "ddbad1f3386d35b34a4ddd38bcb364dfe7b51335a3585046cb0c63d073d56e55",
                "signature_append_only_on_update": "1af8df681e3a81e2d2e7f1aa9f4595d7a843bc94babe03d76cc02cc95dd5c01f",
                "signature_append_only_on_delete": "31474bead8da33664719c858c339d39aa47feea9bfb35d78fabdaed3e69a8e3b",
                "signature_in_batch_on_insert": "462740fa3c7bd48bd1ba629c74a46dca0107d62b76dc79b9e916c015eceef5d7",
            },
        ),
    ]
