-- A completion releases only a lease whose batch is signed and of this run (the broker is not
-- trusted), and a claim does not count an attempt (workers count the leases they take up).
--
-- Release p_release_lease_id first (when given, and only if its batch is signed and of this
-- run), then, if the run is running, claim its next pending batches by seq up to its
-- in-flight limit, leasing each the LRU free key, until batches or free keys run out.
-- Returns each claimed batch's lease.
CREATE OR REPLACE FUNCTION signing_claim_batches_v2(
    p_run_id bigint, p_ttl_seconds double precision, p_release_lease_id bigint DEFAULT NULL
)
RETURNS TABLE (
    lease_id bigint, key_id bigint, kid text, public_key_pem text, batch_id bigint,
    token bigint, acquired_at timestamptz, expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    room integer;
    pending record;
    granted record;
BEGIN
    PERFORM keyring_lock();
    IF p_release_lease_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM keyring_keylease l JOIN signing_batch b ON b.id = l.batch_id
        WHERE l.id = p_release_lease_id AND b.run_id = p_run_id AND b.status = 'signed'
    ) THEN
        PERFORM keyring_release_lease(p_release_lease_id, 'completed');
    END IF;
    -- In flight: keys held (0004 says why).
    SELECT r.max_in_flight - (
        SELECT count(*) FROM keyring_signingkey k WHERE k.held_by_id IS NOT NULL
    ) INTO room
    FROM signing_signingrun r
    WHERE r.id = p_run_id AND r.status = 'running';
    IF room IS NULL OR room <= 0 THEN
        RETURN;
    END IF;
    FOR pending IN
        SELECT b.id
        FROM signing_batch b
        WHERE b.run_id = p_run_id AND b.status = 'pending'
        ORDER BY b.seq
        LIMIT room
        FOR NO KEY UPDATE SKIP LOCKED
    LOOP
        SELECT * INTO granted FROM keyring_lease_lru_key(pending.id, p_ttl_seconds);
        EXIT WHEN NOT FOUND;  -- every key is busy: the next release dispatches again
        UPDATE signing_batch SET status = 'leased', leased_at = granted.acquired_at
        WHERE id = pending.id;
        lease_id := granted.lease_id;
        key_id := granted.key_id;
        kid := granted.kid;
        public_key_pem := granted.public_key_pem;
        batch_id := granted.batch_id;
        token := granted.token;
        acquired_at := granted.acquired_at;
        expires_at := granted.expires_at;
        RETURN NEXT;
    END LOOP;
END;
$$;
