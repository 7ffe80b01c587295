"""Named SQL of the collection service."""

# Store a batch's signatures, fenced, in one statement (records.services.store_signatures):
# lock the lease row if it is still held under this token and not past its expiry; move
# the batch from leased to signed; insert every signature; count each step. The lease
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
    UPDATE signing_batch SET status = 'signed', signed_at = clock_timestamp()
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

# A page of a batch's records still unsigned, in id order, after `after_id` (keyset: a big
# batch is read in bounded pieces). The range is repeated on the signatures: whatever join
# the planner picks, it reads that slice of their primary key and never the whole table (a
# hash anti-join over every signature made each read slower than the last,
# docs/benchmarks.md).
UNSIGNED_PAGE = """
SELECT r.id, r.payload FROM records_record r
WHERE r.id > %(after_id)s AND r.id <= %(last_id)s
  AND NOT EXISTS (
      SELECT 1 FROM records_signature s
      WHERE s.record_id = r.id AND s.record_id > %(after_id)s AND s.record_id <= %(last_id)s
  )
ORDER BY r.id
LIMIT %(limit)s
"""

# Bulk-load seeded records (COPY is several times faster than INSERT at 100k rows).
COPY_RECORDS = "COPY records_record (payload, created_at) FROM STDIN"
ANALYZE_RECORDS = "SELECT signing_analyze_filled_v1('records_record')"  # signing 0008

# Forget every record, signature, run, batch, lease and key (and the keys' disabled periods).
# Ids are NOT restarted: a message from before the reset must never name a row of the new
# data (a lease id and token of the old data would otherwise fence the new batch).
# Deferred foreign-key checks still queued in this transaction run first: TRUNCATE
# refuses a table with pending trigger events.
RESET_ALL = """
SET CONSTRAINTS ALL IMMEDIATE;
TRUNCATE records_signature, keyring_keylease, signing_batch, signing_runaudit, signing_signingrun,
         records_record, keyring_keydisabledperiod, keyring_signingkey
"""
