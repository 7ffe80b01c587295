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
