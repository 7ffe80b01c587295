"""Named SQL of the keyring: statements where one round trip says more than the ORM would.

Each takes its parameters by name. Every timestamp comes from PostgreSQL's
``clock_timestamp()``, one clock for every worker on every host, read while the keyring
lock is held, so lease and release times are totally ordered (docs/architecture.md).
Leasing and releasing are database functions (migrations/0003_lease_functions.py): one
round trip each, the lock held only while PostgreSQL runs them.
"""

# Take the keyring lock for the rest of the transaction.
LOCK_KEYRING = "SELECT keyring_lock()"

# The clock leases and releases are stamped with (read it under the keyring lock).
CLOCK = "SELECT clock_timestamp()"

# Lease the LRU free key to a batch (keyring_lease_lru_key, migration 0003); no row when
# every key is busy. The columns come in the order of keyring.leases.GrantedLease.
LEASE_LRU_KEY = """
SELECT lease_id, key_id, kid, public_key_pem, batch_id, token, acquired_at, expires_at
FROM keyring_lease_lru_key(%(batch_id)s, %(ttl_seconds)s)
"""

# Close a lease still open and stamp its key as used; the lease's batch id, or NULL when
# the lease was closed already.
RELEASE_LEASE = "SELECT keyring_release_lease(%(lease_id)s, %(outcome)s)"

# Push an open lease's expiry one TTL past now, if it is still held under this token.
EXTEND_LEASE = """
UPDATE keyring_keylease
SET expires_at = clock_timestamp() + make_interval(secs => %(ttl_seconds)s)
WHERE id = %(lease_id)s AND token = %(token)s AND released_at IS NULL
  AND expires_at > clock_timestamp()
RETURNING expires_at
"""

# Close every open lease whose time is up, stamping its key as used; say which were closed.
EXPIRE_LEASES = """
WITH now AS (SELECT clock_timestamp() AS t),
expired AS (
    UPDATE keyring_keylease SET released_at = now.t, outcome = 'expired'
    FROM now
    WHERE keyring_keylease.released_at IS NULL AND keyring_keylease.expires_at <= now.t
    RETURNING keyring_keylease.id, keyring_keylease.key_id, keyring_keylease.batch_id,
              keyring_keylease.released_at
),
stamped AS (
    UPDATE keyring_signingkey SET last_used_at = expired.released_at, held_by_id = NULL
    FROM expired WHERE keyring_signingkey.id = expired.key_id
)
SELECT id, batch_id FROM expired ORDER BY id
"""
