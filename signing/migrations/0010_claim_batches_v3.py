"""signing_claim_batches_v3: one turn of the keyring lock releases the leases of several
completed batches and claims the next batches set-based (issue 17).

v2 (0007, kept: a worker of the previous release still calls it during an upgrade) releases
one lease per call and leases keys one by one in a loop; a completion cost a whole turn of
the lock, and the turns were the ceiling of small batches. v3 takes a list of leases to
release and stamps every release and lease of the turn with one instant
(signing/database/postgresql/signing_claim_batches_v3.sql says why the LRU order holds).
"""

from django.db import migrations

from kernel.sql_files import RunSQLFile
from kernel.vendor import POSTGRESQL, RunSQLFor

BACKWARD = "DROP FUNCTION IF EXISTS signing_claim_batches_v3(bigint, double precision, bigint[]);"


class Migration(migrations.Migration):
    dependencies = [("signing", "0009_sql_files")]

    operations = [
        RunSQLFile(
            "postgresql",
            "signing",
            {
                "signing_claim_batches_v3": "2be2a8c6a4f24ce6024f2fc68d35225933d00daa0ea5b185131599332f3d92a3"
            },
        ),
        RunSQLFor(POSTGRESQL, migrations.RunSQL.noop, BACKWARD),
    ]
