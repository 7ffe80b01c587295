"""Embedded mode's SQLite enforces what PostgreSQL does here with an exclusion constraint
and the lease-history triggers (0001, 0004): the same names, as row triggers.

- keylease_no_overlap_per_key (rule 2): no two leases of one key overlap in time, each
  lease the half-open range [acquired_at, released_at), open-ended while held. Datetimes
  are stored as ISO text in UTC, which compares in time order.
- keylease_history_kept: who held what, when, never changes. PostgreSQL also refuses any
  DELETE (TRUNCATE, which row triggers do not see, still resets it); SQLite has no
  TRUNCATE, so here a lease may be deleted only once its key is gone: emptying the
  keyring (seed --reset, a test's flush) deletes the keys first, in the same transaction.
"""

from django.db import migrations

from signing.vendor import SQLITE, RunSQLFor

OVERLAPS = """
    SELECT RAISE(ABORT, 'keylease_no_overlap_per_key: the key is leased at that time already')
    WHERE EXISTS (
        SELECT 1 FROM keyring_keylease other
        WHERE other.key_id = NEW.key_id AND other.id IS NOT NEW.id
          AND (other.released_at IS NULL OR other.released_at > NEW.acquired_at)
          AND (NEW.released_at IS NULL OR NEW.released_at > other.acquired_at)
          AND (other.released_at IS NULL OR other.released_at > other.acquired_at)
          AND (NEW.released_at IS NULL OR NEW.released_at > NEW.acquired_at)
    );
"""

FORWARD = f"""
CREATE TRIGGER keylease_no_overlap_per_key_on_insert
BEFORE INSERT ON keyring_keylease
BEGIN {OVERLAPS} END;

CREATE TRIGGER keylease_no_overlap_per_key_on_update
BEFORE UPDATE OF key_id, acquired_at, released_at ON keyring_keylease
BEGIN {OVERLAPS} END;

CREATE TRIGGER keylease_history_kept_on_delete
BEFORE DELETE ON keyring_keylease
WHEN EXISTS (SELECT 1 FROM keyring_signingkey WHERE id = OLD.key_id)
BEGIN
    SELECT RAISE(ABORT, 'keylease_history_kept: a lease is history and cannot be deleted');
END;

CREATE TRIGGER keylease_history_kept_on_update
BEFORE UPDATE OF id, key_id, batch_id, token, acquired_at ON keyring_keylease
WHEN OLD.id IS NOT NEW.id OR OLD.key_id IS NOT NEW.key_id OR OLD.batch_id IS NOT NEW.batch_id
  OR OLD.token IS NOT NEW.token OR OLD.acquired_at IS NOT NEW.acquired_at
BEGIN
    SELECT RAISE(ABORT, 'keylease_history_kept: a lease''s key, batch, token and start never change');
END;
"""

BACKWARD = """
DROP TRIGGER IF EXISTS keylease_history_kept_on_update;
DROP TRIGGER IF EXISTS keylease_history_kept_on_delete;
DROP TRIGGER IF EXISTS keylease_no_overlap_per_key_on_update;
DROP TRIGGER IF EXISTS keylease_no_overlap_per_key_on_insert;
"""


class Migration(migrations.Migration):
    dependencies = [("keyring", "0005_key_disabled_at")]

    operations = [RunSQLFor(SQLITE, FORWARD, BACKWARD)]
