"""Named SQL of the collection service."""

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
