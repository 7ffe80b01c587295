"""Named SQL of the signing executor."""

# Plan a run: cut the unsigned record ids, in order, into contiguous batches of
# %(batch_size)s (the last may be smaller), in one pass and one statement; say how many
# batches and records were planned.
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
SELECT COUNT(*), COALESCE(SUM(size), 0) FROM planned
"""

ANALYZE_BATCHES = "ANALYZE signing_batch"

# Until the transaction ends, no run is inserted or changes status: SHARE conflicts with
# the ROW EXCLUSIVE lock of INSERT and UPDATE, and with itself with neither. A run being
# started makes this wait for its commit; a run started after this waits for ours.
BLOCK_RUN_CHANGES = "LOCK TABLE signing_signingrun IN SHARE MODE"

# Release a lease (if given), then claim the run's next batches and lease each a key, in
# one turn of the keyring lock (signing_claim_batches, migration 0004). After the batch's
# record range come the lease's columns, in the order of keyring.leases.GrantedLease.
CLAIM_BATCHES = """
SELECT first_record_id, last_record_id,
       lease_id, key_id, kid, public_key_pem, batch_id, token, acquired_at, expires_at
FROM signing_claim_batches(%(run_id)s, %(ttl_seconds)s, %(release_lease_id)s)
"""
