"""The lease history is kept: a lease is never deleted, and who held what, when, never changes.

Rules 2 and 4 are proven afterwards from this table (the audit replays it), and every
signature names its lease. Only what a lease's life changes may change: its expiry
(heartbeats), its release time and outcome. TRUNCATE (seed --reset) still empties it.
"""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor

FORWARD = r"""
CREATE FUNCTION keyring_lease_history_kept() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lease % is history: it cannot be deleted, nor its key, batch, token or start changed',
        OLD.id
        USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'keylease_history_kept',
              TABLE = 'keyring_keylease';
END;
$$;

CREATE TRIGGER keylease_history_kept_on_delete
    BEFORE DELETE ON keyring_keylease
    FOR EACH ROW EXECUTE FUNCTION keyring_lease_history_kept();
CREATE TRIGGER keylease_history_kept_on_update
    BEFORE UPDATE OF id, key_id, batch_id, token, acquired_at ON keyring_keylease
    FOR EACH ROW
    WHEN (
        (OLD.id, OLD.key_id, OLD.batch_id, OLD.token, OLD.acquired_at)
        IS DISTINCT FROM (NEW.id, NEW.key_id, NEW.batch_id, NEW.token, NEW.acquired_at)
    )
    EXECUTE FUNCTION keyring_lease_history_kept();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS keylease_history_kept_on_update ON keyring_keylease;
DROP TRIGGER IF EXISTS keylease_history_kept_on_delete ON keyring_keylease;
DROP FUNCTION IF EXISTS keyring_lease_history_kept();
"""


class Migration(migrations.Migration):
    dependencies = [("keyring", "0003_lease_functions")]

    operations = [RunSQLFor(POSTGRESQL, FORWARD, BACKWARD)]
