"""Named SQL of the PostgreSQL backend (signing.backends.postgresql): the keyring's leases,
the loading and reset of records, and the run's plan, claim, take-up and fenced store.

Each takes its parameters by name. Every timestamp of a lease comes from PostgreSQL's
``clock_timestamp()``, one clock for every worker on every host, read while the keyring
lock is held, so lease and release times are totally ordered (docs/architecture.md).
Leasing, releasing and claiming are database functions (keyring migration 0003, signing
migration 0007): one round trip each, the lock held only while PostgreSQL runs them.
"""

# --- The keyring ----------------------------------------------------------------------

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

# Close every open lease whose time is up, stamping its key as used; say which were closed
# (with their batch and its run, for the lease.expired line).
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
SELECT expired.id, expired.batch_id, signing_batch.run_id
FROM expired JOIN signing_batch ON signing_batch.id = expired.batch_id
ORDER BY expired.id
"""


# --- Records --------------------------------------------------------------------------

# Bulk-load seeded records (COPY is several times faster than INSERT at 100k rows).
COPY_RECORDS = "COPY records_record (payload, created_at) FROM STDIN"
ANALYZE_RECORDS = "SELECT signing_analyze_filled_v1('records_record')"  # signing 0008

# Forget every record, signature, run, batch, checkpoint, lease and key (and the keys'
# disabled periods).
# Ids are NOT restarted: a message from before the reset must never name a row of the new
# data (a lease id and token of the old data would otherwise fence the new batch).
# Deferred foreign-key checks still queued in this transaction run first: TRUNCATE
# refuses a table with pending trigger events.
RESET_ALL = """
SET CONSTRAINTS ALL IMMEDIATE;
TRUNCATE signing_checkpoint, records_signature, keyring_keylease, signing_batch, signing_runaudit,
         signing_signingrun, records_record, keyring_keydisabledperiod, keyring_signingkey
"""


# --- A run ----------------------------------------------------------------------------

# Plan a run: cut the unsigned record ids, in order, into contiguous batches of
# %(batch_size)s (the last may be smaller), in one pass and one statement; say how many
# batches and records were planned, and the highest record id the plan saw (0 if none): one
# statement, one snapshot, so every record up to it was signed or planned here (the run's
# `planned_through`, which the audit holds a completed run to).
PLAN_BATCHES = """
WITH numbered AS (
    SELECT r.id, (ROW_NUMBER() OVER (ORDER BY r.id) - 1) / %(batch_size)s AS grp
    FROM records_record r
    WHERE NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
),
planned AS (
    INSERT INTO signing_batch
        (run_id, seq, first_record_id, last_record_id, size, status, attempts, last_error,
         created_at)
    SELECT %(run_id)s, grp + 1, MIN(id), MAX(id), COUNT(*), 'pending', 0, '', now()
    FROM numbered
    GROUP BY grp
    ORDER BY grp
    RETURNING size
)
SELECT COUNT(*), COALESCE(SUM(size), 0), (SELECT COALESCE(MAX(id), 0) FROM records_record)
FROM planned
"""

# ANALYZE through the owner's function (migration 0008): the app role owns no table.
ANALYZE_BATCHES = "SELECT signing_analyze_filled_v1('signing_batch')"

# A run finished: every session LISTENing on the channel hears it once this commits. The
# payload is the run's id, and only a hint: a listener reads its run again (anyone who can
# connect could NOTIFY).
ANNOUNCE_RUN_FINISHED = "SELECT pg_notify('signing_run_finished', %(run_id)s::text)"
LISTEN_FOR_FINISHED_RUNS = "LISTEN signing_run_finished"

# Until the transaction ends, no run is inserted or changes status: SHARE conflicts with
# the ROW EXCLUSIVE lock of INSERT and UPDATE, and with itself with neither. A run being
# started makes this wait for its commit; a run started after this waits for ours.
BLOCK_RUN_CHANGES = "LOCK TABLE signing_signingrun IN SHARE MODE"

# Wait out every record insert in flight and hold new ones off until the transaction ends:
# records_record in SHARE mode, through the owner's function (signing 0012; its file says
# why the app role cannot take the lock itself). A plan or a follow run's cut takes it, so
# no record can commit later with an id inside a range it cuts.
LOCK_RECORD_INSERTS = "SELECT signing_lock_record_inserts_v1()"

# Release the leases given (each only if its batch is signed and of this run), then claim
# the run's next batches and lease each a key, in one turn of the keyring lock
# (signing_claim_batches_v3, migration 0010). The columns come in the order of
# keyring.leases.GrantedLease.
CLAIM_BATCHES = """
SELECT lease_id, key_id, kid, public_key_pem, batch_id, token, acquired_at, expires_at
FROM signing_claim_batches_v3(%(run_id)s, %(ttl_seconds)s, %(release_lease_ids)s::bigint[])
"""

# A worker takes up the batch a SigningTriggered names. The message is a hint, checked
# here: its lease, token, batch, key and kid must all be one open, unexpired lease's, or no
# row comes back (a forged, stale or late message: nothing is signed). The first time a
# lease is taken up it is stamped `started_at`, its batch counts an attempt, and it lives a
# full TTL from now (its message may have waited in the queue). The lease row is locked
# first, so an expiry or release running at the same time is ordered with this.
# Returns the batch's status and range, whether its run follows (only a follow run's store
# makes checkpoints: no query more for the others), and, while it is leased, the first page
# of its records still unsigned (records.sql.UNSIGNED_PAGE's first page, in the same round
# trip): one row per record, or one row with no record. The worker reads any further page
# itself.
TAKE_UP_BATCH = """
WITH lease AS (
    SELECT l.id, l.batch_id, l.started_at, b.status, b.first_record_id, b.last_record_id,
           r.follow
    FROM keyring_keylease l
    JOIN signing_batch b ON b.id = l.batch_id
    JOIN signing_signingrun r ON r.id = b.run_id
    JOIN keyring_signingkey k ON k.id = l.key_id
    WHERE l.id = %(lease_id)s AND l.token = %(token)s AND l.batch_id = %(batch_id)s
      AND l.key_id = %(key_id)s AND k.kid = %(kid)s
      AND l.released_at IS NULL AND l.expires_at > clock_timestamp()
    FOR NO KEY UPDATE OF l
),
started AS (
    UPDATE keyring_keylease l
    SET started_at = clock_timestamp(),
        expires_at = GREATEST(
            l.expires_at, clock_timestamp() + make_interval(secs => %(ttl_seconds)s)
        )
    FROM lease
    WHERE l.id = lease.id AND lease.started_at IS NULL AND lease.status = 'leased'
    RETURNING l.batch_id
),
counted AS (
    UPDATE signing_batch b SET attempts = b.attempts + 1 FROM started WHERE b.id = started.batch_id
)
SELECT lease.status, lease.first_record_id, lease.last_record_id, lease.follow, page.id,
       page.payload
FROM lease
LEFT JOIN LATERAL (
    SELECT r.id, r.payload FROM records_record r
    WHERE lease.status = 'leased'
      AND r.id >= lease.first_record_id AND r.id <= lease.last_record_id
      AND NOT EXISTS (
          SELECT 1 FROM records_signature s
          WHERE s.record_id = r.id
            AND s.record_id >= lease.first_record_id AND s.record_id <= lease.last_record_id
      )
    ORDER BY r.id
    LIMIT %(page_size)s
) page ON true
ORDER BY page.id
"""

# Store a batch's signatures, fenced, in one statement (signing.runs.store.store_signatures):
# lock the lease row if it is still held under this token and not past its expiry; move
# the batch from leased to signed with its Merkle root (the worker's, over the signatures
# bound here: signing.audit.roots); insert every signature; count each step. The lease
# lock comes first: the batch update waits on it (EXISTS), and the insert on the batch
# update (its row). Parameters are bound server-side in binary (%b): a thousand
# signatures would otherwise be spelled out in hex inside the query text and parsed back.
# {signatures} is where they come from: arrays bound with the statement, or the stage.
_STORE_FENCED = """
WITH lease AS (
    SELECT id FROM keyring_keylease
    WHERE id = %(lease_id)b AND token = %(token)b AND batch_id = %(batch_id)b
      AND key_id = %(key_id)b AND released_at IS NULL AND expires_at > clock_timestamp()
    FOR NO KEY UPDATE
),
claimed AS (
    UPDATE signing_batch
    SET status = 'signed', signed_at = clock_timestamp(), merkle_root = %(merkle_root)b
    WHERE id = %(batch_id)b AND status = 'leased' AND EXISTS (SELECT FROM lease){whole}
    RETURNING signed_at
),
inserted AS (
    INSERT INTO records_signature (record_id, key_id, batch_id, lease_id, signature, signed_at)
    SELECT s.record_id, %(key_id)b, %(batch_id)b, %(lease_id)b, s.signature, claimed.signed_at
    FROM claimed
    CROSS JOIN {signatures} AS s(record_id, signature)
    ON CONFLICT (record_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM claimed), (SELECT count(*) FROM inserted)
"""
STORE_SIGNATURES = _STORE_FENCED.format(
    signatures="unnest(%(record_ids)b::bigint[], %(signatures)b::bytea[])", whole=""
)

# A batch bigger than a page of records is signed a page at a time, and each page's
# signatures are staged in a temporary table, this session's own (no WAL, seen by no one
# else, gone with the session), so a worker never holds more than a page. The stage is
# stored by the same fenced statement, and only whole: a session lost half-way (a restart)
# would leave fewer rows than were staged.
CREATE_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS signing_staged_signature (
    record_id bigint NOT NULL, signature bytea NOT NULL
)
"""
CLEAR_STAGE = "TRUNCATE signing_staged_signature"
STAGE_SIGNATURES = """
INSERT INTO signing_staged_signature (record_id, signature)
SELECT * FROM unnest(%(record_ids)b::bigint[], %(signatures)b::bytea[])
"""
STORE_STAGED_SIGNATURES = _STORE_FENCED.format(
    signatures="signing_staged_signature",
    whole="\n      AND (SELECT count(*) FROM signing_staged_signature) = %(staged)b",
)


# --- The audit ------------------------------------------------------------------------

# Rule 2: pairs of leases of one key whose time ranges overlap.
OVERLAPPING_LEASES = """
SELECT a.id, b.id, k.kid FROM keyring_keylease a
JOIN keyring_keylease b ON b.key_id = a.key_id AND b.id > a.id
 AND tstzrange(a.acquired_at, a.released_at) && tstzrange(b.acquired_at, b.released_at)
JOIN keyring_signingkey k ON k.id = a.key_id
JOIN signing_batch ba ON ba.id = a.batch_id
JOIN signing_batch bb ON bb.id = b.batch_id
WHERE CAST(%(run_id)s AS bigint) IS NULL OR %(run_id)s IN (ba.run_id, bb.run_id)
"""

# --- The reaper -----------------------------------------------------------------------

# One recovery pass at a time across every worker process: a transaction-scoped advisory
# lock, so it can never outlive the pass's transaction.
TRY_REAPER_LOCK = "SELECT pg_try_advisory_xact_lock(%s)"
