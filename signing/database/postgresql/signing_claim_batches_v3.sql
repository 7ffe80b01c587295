-- One turn of the keyring lock for the completions of several batches (issue 17): what
-- signing_claim_batches_v2 does for one lease, for a list of them, set-based.
--
-- Release every lease of p_release_lease_ids that is open and whose batch is signed and of
-- this run (the broker is not trusted), then, if the run is running, claim its next pending
-- batches by seq up to its in-flight limit, leasing each the LRU free key, until batches or
-- free keys run out. Returns each claimed batch's lease, in seq order.
--
-- Every release and lease of the turn is stamped with one instant, read under the lock (as
-- the expiry of leases is). The i-th pending batch gets the i-th least recently used free
-- key, and lease ids rise in that order, so a replay of that instant (releases first, then
-- leases by id: signing.audit.rules.replay_lru) sees each lease take the LRU free key. A key
-- released and leased again in one turn has the ranges [acquired, t) and [t, ...), which do
-- not overlap.
CREATE OR REPLACE FUNCTION signing_claim_batches_v3(
    p_run_id bigint, p_ttl_seconds double precision, p_release_lease_ids bigint[]
)
RETURNS TABLE (
    lease_id bigint, key_id bigint, kid text, public_key_pem text, batch_id bigint,
    token bigint, acquired_at timestamptz, expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE
-- Plan each statement once per session: a custom plan per call (the default, for the LIMIT
-- of the run's room) cost more than running it, and all of it under the keyring lock.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    turn timestamptz;
    room integer;
    released_id bigint;
    completed record;
BEGIN
    PERFORM keyring_lock();
    turn := clock_timestamp();
    -- One lease at a time, the lease and its batch each found by primary key and checked
    -- here: a condition on the batch's status in the statement let the planner, with
    -- statistics from the run's start (no batch signed yet), read every signed batch of the
    -- run for each release. Under the keyring lock neither row can change meanwhile.
    FOREACH released_id IN ARRAY p_release_lease_ids LOOP
        SELECT l.key_id, b.run_id, b.status INTO completed
        FROM keyring_keylease l JOIN signing_batch b ON b.id = l.batch_id
        WHERE l.id = released_id AND l.released_at IS NULL;
        IF FOUND AND completed.run_id = p_run_id AND completed.status = 'signed' THEN
            UPDATE keyring_keylease SET released_at = turn, outcome = 'completed'
            WHERE id = released_id;
            UPDATE keyring_signingkey SET last_used_at = turn, held_by_id = NULL
            WHERE id = completed.key_id;
        END IF;
    END LOOP;
    -- In flight: keys held (signing 0004 says why).
    SELECT r.max_in_flight - (
        SELECT count(*) FROM keyring_signingkey k WHERE k.held_by_id IS NOT NULL
    ) INTO room
    FROM signing_signingrun r
    WHERE r.id = p_run_id AND r.status = 'running';
    IF room IS NULL OR room <= 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH pending AS (
        SELECT p.id, row_number() OVER (ORDER BY p.seq) AS n
        FROM (
            SELECT b.id, b.seq FROM signing_batch b
            WHERE b.run_id = p_run_id AND b.status = 'pending'
            ORDER BY b.seq
            LIMIT room
            FOR NO KEY UPDATE SKIP LOCKED
        ) p
    ),
    free AS (
        SELECT f.id, f.kid, f.public_key_pem,
               row_number() OVER (ORDER BY f.last_used_at ASC NULLS FIRST, f.id) AS n
        FROM (
            SELECT k.id, k.kid, k.public_key_pem, k.last_used_at FROM keyring_signingkey k
            WHERE k.enabled AND k.held_by_id IS NULL
            ORDER BY k.last_used_at ASC NULLS FIRST, k.id
            LIMIT room
            FOR NO KEY UPDATE SKIP LOCKED
        ) f
    ),
    granted AS (
        INSERT INTO keyring_keylease AS l (key_id, batch_id, token, acquired_at, expires_at)
        SELECT free.id, pending.id,
               COALESCE((SELECT MAX(t.token) FROM keyring_keylease t WHERE t.key_id = free.id), 0)
                   + 1,
               turn, turn + make_interval(secs => p_ttl_seconds)
        FROM pending JOIN free ON free.n = pending.n
        ORDER BY pending.n
        RETURNING l.id, l.key_id, l.batch_id, l.token, l.acquired_at, l.expires_at
    ),
    held AS (
        UPDATE keyring_signingkey k SET held_by_id = granted.id
        FROM granted WHERE k.id = granted.key_id
    ),
    leased AS (
        UPDATE signing_batch b SET status = 'leased', leased_at = turn
        FROM granted WHERE b.id = granted.batch_id
    )
    SELECT granted.id, granted.key_id, free.kid, free.public_key_pem, granted.batch_id,
           granted.token, granted.acquired_at, granted.expires_at
    FROM granted JOIN free ON free.id = granted.key_id
    ORDER BY granted.id;
END;
$$;
