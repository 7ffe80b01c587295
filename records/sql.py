"""Named SQL of the collection service."""

# Store a batch's signatures in one round trip and say how many landed; a record that
# already has a signature keeps it (its primary key refuses a second) and is not counted.
INSERT_SIGNATURES = """
WITH now AS (SELECT clock_timestamp() AS t),
inserted AS (
    INSERT INTO records_signature (record_id, key_id, batch_id, lease_id, signature, signed_at)
    SELECT s.record_id, %(key_id)s, %(batch_id)s, %(lease_id)s, s.signature, now.t
    FROM unnest(%(record_ids)s::bigint[], %(signatures)s::bytea[]) AS s(record_id, signature)
    CROSS JOIN now
    ON CONFLICT (record_id) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""

# Bulk-load seeded records (COPY is several times faster than INSERT at 100k rows).
COPY_RECORDS = "COPY records_record (payload, created_at) FROM STDIN"
ANALYZE_RECORDS = "ANALYZE records_record"

# Forget every record, signature, run, batch, lease and key, and restart their ids.
# Deferred foreign-key checks still queued in this transaction run first: TRUNCATE
# refuses a table with pending trigger events.
RESET_ALL = """
SET CONSTRAINTS ALL IMMEDIATE;
TRUNCATE records_signature, keyring_keylease, signing_batch, signing_runaudit, signing_signingrun,
         records_record, keyring_signingkey
RESTART IDENTITY
"""
