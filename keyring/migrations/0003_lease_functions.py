"""The keyring's critical section as database functions: one round trip holds the lock.

Every lease and release runs under one transaction-scoped advisory lock (the keyring lock),
so the LRU pick sees every release committed before it and the audit can replay it. When
those steps were separate statements from Python, the lock stayed held across each round
trip and each wait for the worker's GIL, and every completion in every worker queued
behind it (docs/benchmarks.md). As functions, a call holds the lock only while PostgreSQL
runs them. They are VOLATILE: each statement inside takes a fresh snapshot, so the
statements after the lock see every release that committed before it was granted.
"""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor

FORWARD = r"""
-- Take the keyring lock until the end of the transaction (crc32 of
-- 'keyring_signingkey lease lock').
CREATE FUNCTION keyring_lock() RETURNS void
LANGUAGE sql VOLATILE AS $$ SELECT pg_advisory_xact_lock(1465065985) $$;

-- Lease the least recently used free key to a batch; no row when every key is busy.
-- The token is the key's next fencing number; both times come from clock_timestamp(),
-- read under the lock, so lease and release times are totally ordered.
CREATE FUNCTION keyring_lease_lru_key(p_batch_id bigint, p_ttl_seconds double precision)
RETURNS TABLE (
    lease_id bigint, key_id bigint, kid text, public_key_pem text, batch_id bigint,
    token bigint, acquired_at timestamptz, expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    chosen record;
    granted_at timestamptz;
BEGIN
    PERFORM keyring_lock();
    SELECT k.id, k.kid, k.public_key_pem INTO chosen
    FROM keyring_signingkey k
    WHERE k.enabled AND k.held_by_id IS NULL
    ORDER BY k.last_used_at ASC NULLS FIRST, k.id
    LIMIT 1
    FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    granted_at := clock_timestamp();
    INSERT INTO keyring_keylease AS l (key_id, batch_id, token, acquired_at, expires_at)
    VALUES (
        chosen.id,
        p_batch_id,
        COALESCE((SELECT MAX(t.token) FROM keyring_keylease t WHERE t.key_id = chosen.id), 0) + 1,
        granted_at,
        granted_at + make_interval(secs => p_ttl_seconds)
    )
    RETURNING l.id, l.key_id, chosen.kid, chosen.public_key_pem, l.batch_id, l.token,
              l.acquired_at, l.expires_at
    INTO lease_id, key_id, kid, public_key_pem, batch_id, token, acquired_at, expires_at;
    UPDATE keyring_signingkey SET held_by_id = lease_id WHERE id = chosen.id;
    RETURN NEXT;
END;
$$;

-- Close a lease still open and stamp its key as used at the same instant; return the
-- lease's batch id, or NULL when it was closed already (a redelivered completion).
CREATE FUNCTION keyring_release_lease(p_lease_id bigint, p_outcome text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    released record;
BEGIN
    PERFORM keyring_lock();
    UPDATE keyring_keylease SET released_at = clock_timestamp(), outcome = p_outcome
    WHERE id = p_lease_id AND released_at IS NULL
    RETURNING key_id, batch_id, released_at INTO released;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE keyring_signingkey SET last_used_at = released.released_at, held_by_id = NULL
    WHERE id = released.key_id;
    RETURN released.batch_id;
END;
$$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS keyring_release_lease(bigint, text);
DROP FUNCTION IF EXISTS keyring_lease_lru_key(bigint, double precision);
DROP FUNCTION IF EXISTS keyring_lock();
"""


class Migration(migrations.Migration):
    dependencies = [("keyring", "0002_key_held_by")]

    operations = [RunSQLFor(POSTGRESQL, FORWARD, BACKWARD)]
