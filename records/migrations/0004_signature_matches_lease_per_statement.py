"""Rule 3 in the database, checked once per statement instead of once per row.

signature_matches_lease was a composite foreign key: for every signature inserted,
PostgreSQL looked the lease up and locked its row again, a thousand times per batch of a
thousand, for the one lease they all name. It cost 8% of end-to-end throughput at batch
size 1000 (docs/benchmarks.md). These triggers make the same promise with one set-based
check per statement over the rows it wrote: every (lease_id, key_id, batch_id) must be a
lease's. What else the foreign key protected, the lease row itself, the lease history
keeps on its own now (keyring migration 0004: leases are never deleted nor re-pointed).
The error keeps the constraint's name and SQLSTATE (23503, foreign_key_violation).
"""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor

FORWARD = r"""
ALTER TABLE records_signature DROP CONSTRAINT signature_matches_lease;

CREATE FUNCTION records_signature_matches_lease() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stray record;
BEGIN
    SELECT s.lease_id, s.key_id, s.batch_id INTO stray
    FROM (SELECT DISTINCT lease_id, key_id, batch_id FROM written) s
    WHERE NOT EXISTS (
        SELECT 1 FROM keyring_keylease l
        WHERE l.id = s.lease_id AND l.key_id = s.key_id AND l.batch_id = s.batch_id
    )
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'signature names lease %, key % and batch %, which is no lease''s',
            stray.lease_id, stray.key_id, stray.batch_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'signature_matches_lease',
                  TABLE = 'records_signature';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER signature_matches_lease_on_insert
    AFTER INSERT ON records_signature REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION records_signature_matches_lease();
CREATE TRIGGER signature_matches_lease_on_update
    AFTER UPDATE ON records_signature REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION records_signature_matches_lease();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS signature_matches_lease_on_update ON records_signature;
DROP TRIGGER IF EXISTS signature_matches_lease_on_insert ON records_signature;
DROP FUNCTION IF EXISTS records_signature_matches_lease();
ALTER TABLE records_signature ADD CONSTRAINT signature_matches_lease
    FOREIGN KEY (lease_id, key_id, batch_id) REFERENCES keyring_keylease (id, key_id, batch_id)
    DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0003_signature_one_lease_check"),
        ("keyring", "0004_lease_history_kept"),
    ]

    operations = [RunSQLFor(POSTGRESQL, FORWARD, BACKWARD)]
