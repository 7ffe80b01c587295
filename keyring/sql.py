"""Named SQL of the keyring: statements where one round trip says more than the ORM would.

Each takes its parameters by name. Every timestamp comes from PostgreSQL's
``clock_timestamp()``, one clock for every worker on every host, read while the keyring
lock is held, so lease and release times are totally ordered (docs/architecture.md).
"""

# Take the keyring lock for the rest of the transaction.
LOCK_KEYRING = "SELECT pg_advisory_xact_lock(%(lock_id)s)"

# Grant a lease on a key whose row the caller has locked; the token is the key's next
# fencing number.
INSERT_LEASE = """
WITH now AS (SELECT clock_timestamp() AS t)
INSERT INTO keyring_keylease (key_id, batch_id, token, acquired_at, expires_at)
SELECT %(key_id)s, %(batch_id)s,
       COALESCE((SELECT MAX(token) FROM keyring_keylease WHERE key_id = %(key_id)s), 0) + 1,
       now.t, now.t + make_interval(secs => %(ttl_seconds)s)
FROM now
RETURNING id, token, acquired_at, expires_at
"""

# Close a lease still open and stamp its key as used at the same instant; no row comes
# back when the lease was already closed.
RELEASE_LEASE = """
WITH now AS (SELECT clock_timestamp() AS t),
released AS (
    UPDATE keyring_keylease SET released_at = now.t, outcome = %(outcome)s
    FROM now
    WHERE keyring_keylease.id = %(lease_id)s AND keyring_keylease.released_at IS NULL
    RETURNING keyring_keylease.key_id, keyring_keylease.batch_id, keyring_keylease.released_at
)
UPDATE keyring_signingkey SET last_used_at = released.released_at
FROM released
WHERE keyring_signingkey.id = released.key_id
RETURNING released.batch_id
"""

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
    UPDATE keyring_signingkey SET last_used_at = expired.released_at
    FROM expired WHERE keyring_signingkey.id = expired.key_id
)
SELECT id, batch_id FROM expired ORDER BY id
"""
