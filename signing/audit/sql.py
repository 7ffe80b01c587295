"""Named SQL of the audit: each query returns the rows that break a rule (none is a pass).

`%(run_id)s` is NULL to audit everything, or a run id to audit that run's batches only.
Every query reads the same on PostgreSQL and SQLite (embedded mode), but one: rule 2's
overlapping leases, which each backend asks its own way (SQLite has no range types), so
it is signing.backends' overlapping_leases.
"""

# Rule 1: records with more than one signature (the primary key should make this empty).
DOUBLE_SIGNED = """
SELECT s.record_id, COUNT(*) FROM records_signature s
JOIN signing_batch b ON b.id = s.batch_id
WHERE CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s
GROUP BY s.record_id HAVING COUNT(*) > 1
"""

# Rule 1 (a breach): records with no signature in the ranges of a completed run's batches
# (of every completed run, or of the one audited): those created before the run started,
# and for a follow run every one (its cuts wait out record inserts in flight, so no record
# can land in a range cut before it: signing.runs.follow). A completed run signed each of
# its batches whole, so a record of one left unsigned is a lost signature. (A record its
# plan saw but left out of every range is UNSIGNED_BELOW_COMPLETED_MARKS'.)
UNSIGNED_IN_COMPLETED_RUNS = """
SELECT DISTINCT r.id FROM signing_batch b
JOIN signing_signingrun run ON run.id = b.run_id AND run.status = 'completed'
JOIN records_record r ON r.id BETWEEN b.first_record_id AND b.last_record_id
WHERE (CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s)
  AND NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
  AND (run.follow OR r.created_at <= run.started_at)
ORDER BY r.id
"""

# Rule 1 (a breach): records with no signature that a completed run's plan saw, each with
# the first such run and whether it follows. Every record up to a run's high-water mark was
# signed already or in one of its batches when it was planned (an ordinary run's
# `planned_through`, read in the plan's own statement under the record-insert lock) or cut
# (a follow run's `followed_through`: signing.runs.follow), and signatures are never
# removed: so one unsigned now was unsigned then, and the completed run owed it, even if it
# lies outside every batch's range (a plan that dropped its last batch, or a run completed
# with no batch while records waited). An insert waiting behind the plan's lock gets a
# later id, so it stays above the mark; its created_at may be earlier, which is why the
# mark is an id and not a time. Runs planned before signing 0015 have no mark: the batch
# ranges above judge them.
UNSIGNED_BELOW_COMPLETED_MARKS = """
WITH marks AS (
    SELECT id, follow,
           CASE WHEN follow THEN followed_through ELSE planned_through END AS through
    FROM signing_signingrun
    WHERE status = 'completed' AND (follow OR planned_through IS NOT NULL)
      AND (CAST(%(run_id)s AS bigint) IS NULL OR id = %(run_id)s)
)
SELECT r.id, first.id, first.follow
FROM records_record r
JOIN marks first ON first.id = (
    SELECT MIN(m.id) FROM marks m WHERE m.through >= r.id
)
WHERE r.id <= (SELECT MAX(through) FROM marks)
  AND NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
ORDER BY r.id
"""

# A run's batch ranges, to count which of the records a completed run lost lie in them.
RUN_BATCH_RANGES = """
SELECT first_record_id, last_record_id FROM signing_batch WHERE run_id = %(run_id)s
ORDER BY first_record_id
"""

# Not a breach, a state: how many records have no signature, among all records. Those no
# completed run had to sign (seeded or arrived since, or left by a cancelled or failed run)
# are simply not signed yet: the next run plans and signs them.
NOT_SIGNED_ALL = """
SELECT COUNT(*) FROM records_record r
WHERE NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
"""

# The same, among the records of one run's batches (a cancelled, failed or running run's).
NOT_SIGNED_IN_RUN = """
SELECT COUNT(DISTINCT r.id) FROM signing_batch b
JOIN records_record r ON r.id BETWEEN b.first_record_id AND b.last_record_id
WHERE b.run_id = %(run_id)s
  AND NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
"""

# A run's status, for what its audit says of its unsigned records.
RUN_STATUS = "SELECT status FROM signing_signingrun WHERE id = %(run_id)s"

# Rule 1: signed batches whose signature count differs from their planned size.
BATCH_COUNT_MISMATCH = """
SELECT b.id, b.seq, b.size, COUNT(s.record_id) FROM signing_batch b
LEFT JOIN records_signature s ON s.batch_id = b.id
WHERE b.status = 'signed' AND (CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s)
GROUP BY b.id HAVING COUNT(s.record_id) <> b.size
ORDER BY b.id
"""

# Every signature with what verifying it needs, in record order (streamed).
SIGNATURES_TO_VERIFY = """
SELECT s.record_id, r.payload, s.key_id, s.signature FROM records_signature s
JOIN records_record r ON r.id = s.record_id
JOIN signing_batch b ON b.id = s.batch_id
WHERE CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s
ORDER BY s.record_id
"""

# Rule 3: batches whose signatures name more than one key or lease.
BATCH_MANY_KEYS = """
SELECT s.batch_id, COUNT(DISTINCT s.key_id), COUNT(DISTINCT s.lease_id)
FROM records_signature s JOIN signing_batch b ON b.id = s.batch_id
WHERE CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s
GROUP BY s.batch_id HAVING COUNT(DISTINCT s.key_id) > 1 OR COUNT(DISTINCT s.lease_id) > 1
"""

# Rule 3: signatures whose key or batch is not their lease's.
SIGNATURE_NOT_LEASE_KEY = """
SELECT s.record_id, s.key_id, l.key_id, s.batch_id, l.batch_id FROM records_signature s
JOIN keyring_keylease l ON l.id = s.lease_id
JOIN signing_batch b ON b.id = s.batch_id
WHERE (l.key_id <> s.key_id OR l.batch_id <> s.batch_id)
  AND (CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s)
"""

# Rule 3: signatures filed under a batch whose range does not hold their record.
SIGNATURE_OUTSIDE_BATCH = """
SELECT s.record_id, s.batch_id, b.first_record_id, b.last_record_id FROM records_signature s
JOIN signing_batch b ON b.id = s.batch_id
WHERE s.record_id NOT BETWEEN b.first_record_id AND b.last_record_id
  AND (CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s)
ORDER BY s.record_id
"""

# Rules 2 and 3: signatures written outside the time their lease was held.
SIGNED_OUTSIDE_LEASE = """
SELECT s.record_id, s.lease_id, s.signed_at, l.acquired_at, l.released_at
FROM records_signature s
JOIN keyring_keylease l ON l.id = s.lease_id
JOIN signing_batch b ON b.id = s.batch_id
WHERE (s.signed_at < l.acquired_at OR s.signed_at > l.released_at)
  AND (CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s)
ORDER BY s.record_id
"""

# Every lease ever granted, for replaying rule 4 (LRU order is global across runs).
LEASE_HISTORY = """
SELECT l.id, l.key_id, l.acquired_at, l.released_at, b.run_id
FROM keyring_keylease l JOIN signing_batch b ON b.id = l.batch_id
ORDER BY l.acquired_at, l.id
"""

KEYS = "SELECT id, kid, created_at, enabled FROM keyring_signingkey"

# Every time a key was out of the keyring, [disabled_at, enabled_at), for the same replay.
DISABLED_PERIODS = """
SELECT key_id, disabled_at, enabled_at FROM keyring_keydisabledperiod
ORDER BY key_id, disabled_at
"""

# Leases still open although their run has finished.
OPEN_AFTER_FINISH = """
SELECT l.id, k.kid, run.id, run.status FROM keyring_keylease l
JOIN keyring_signingkey k ON k.id = l.key_id
JOIN signing_batch b ON b.id = l.batch_id
JOIN signing_signingrun run ON run.id = b.run_id
WHERE l.released_at IS NULL AND run.status IN ('completed', 'failed', 'cancelled')
  AND (CAST(%(run_id)s AS bigint) IS NULL OR run.id = %(run_id)s)
"""

# Rule 5: batches larger than their run's batch size, or smaller without being the last.
# A follow run's batches are cut as records arrive (signing.runs.follow): each must hold
# min(waiting, batch size) records, `waiting` being how many were waiting when it was cut,
# so a batch is smaller only when fewer records were waiting.
BATCH_SIZE_BROKEN = """
SELECT b.run_id, b.seq, b.size, run.batch_size, run.follow, b.waiting FROM signing_batch b
JOIN signing_signingrun run ON run.id = b.run_id
WHERE (b.size > run.batch_size
       OR (NOT run.follow AND b.size < run.batch_size
           AND b.seq < (SELECT MAX(seq) FROM signing_batch last WHERE last.run_id = b.run_id))
       OR (run.follow AND (b.waiting IS NULL OR b.size <> CASE
               WHEN b.waiting < run.batch_size THEN b.waiting ELSE run.batch_size END)))
  AND (CAST(%(run_id)s AS bigint) IS NULL OR run.id = %(run_id)s)
ORDER BY b.run_id, b.seq
"""

# Finished runs whose batches say otherwise.
RUN_STATUS_INCONSISTENT = """
SELECT run.id, run.status, b.status, COUNT(*) FROM signing_signingrun run
JOIN signing_batch b ON b.run_id = run.id
WHERE ((run.status = 'completed' AND b.status <> 'signed')
       OR (run.status = 'failed' AND b.status IN ('pending', 'leased'))
       -- cancel_run releases the leases of a cancelled run and puts their batches back to
       -- pending, where its unsigned batches stay (docs/architecture.md, Decisions)
       OR (run.status = 'cancelled' AND b.status = 'leased'))
  AND (CAST(%(run_id)s AS bigint) IS NULL OR run.id = %(run_id)s)
GROUP BY run.id, run.status, b.status
"""

# Keys whose held_by is not their open lease (held_by names the lease that holds a key, NULL
# when none does; the lease functions keep the two together under the keyring lock).
KEY_HOLDERS_MISMATCHED = """
SELECT k.kid, k.held_by_id, l.id
FROM keyring_signingkey k
LEFT JOIN keyring_keylease l ON l.key_id = k.id AND l.released_at IS NULL
WHERE COALESCE(k.held_by_id, 0) <> COALESCE(l.id, 0)  -- ids start at 1
ORDER BY k.id
"""

# Tamper evidence: every signed batch's signatures, batch by batch in record id order, with
# the Merkle root the batch holds (streamed; a batch with no signature left has one row).
BATCH_SIGNATURES_FOR_ROOTS = """
SELECT b.run_id, b.id, b.seq, b.merkle_root, s.record_id, s.signature
FROM signing_batch b
LEFT JOIN records_signature s ON s.batch_id = b.id
WHERE b.status = 'signed' AND (CAST(%(run_id)s AS bigint) IS NULL OR b.run_id = %(run_id)s)
ORDER BY b.id, s.record_id
"""

# Tamper evidence: every completed run with the Merkle root it holds.
COMPLETED_RUN_ROOTS = """
SELECT id, merkle_root FROM signing_signingrun
WHERE status = 'completed' AND (CAST(%(run_id)s AS bigint) IS NULL OR id = %(run_id)s)
ORDER BY id
"""

# Follow runs' checkpoints, each with its key's public key and, through the lease it names,
# that lease's key, run, and whether it was held when the checkpoint was signed.
CHECKPOINTS = """
SELECT c.key_id, c.run_id, c.batches, c.merkle_root, c.signature, k.kid, k.public_key_pem,
       l.key_id, b.run_id,
       CASE WHEN l.acquired_at <= c.signed_at
                 AND (l.released_at IS NULL OR c.signed_at <= l.released_at)
            THEN 1 ELSE 0 END
FROM signing_checkpoint c
JOIN keyring_signingkey k ON k.id = c.key_id
LEFT JOIN keyring_keylease l ON l.id = c.lease_id
LEFT JOIN signing_batch b ON b.id = l.batch_id
WHERE CAST(%(run_id)s AS bigint) IS NULL OR c.run_id = %(run_id)s
ORDER BY c.run_id, c.batches
"""
