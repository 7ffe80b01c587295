-- Superseded by signing_claim_batches_v2 (which the code calls); kept for processes of an
-- older release that still call it during an upgrade.
--
-- Release p_release_lease_id first (when given), then, if the run is running, claim its
-- next pending batches by seq up to its in-flight limit, leasing each the LRU free key,
-- until batches or free keys run out. Returns each claimed batch with its lease.
CREATE OR REPLACE FUNCTION signing_claim_batches(
    p_run_id bigint, p_ttl_seconds double precision, p_release_lease_id bigint DEFAULT NULL
)
RETURNS TABLE (
    batch_id bigint, first_record_id bigint, last_record_id bigint,
    lease_id bigint, key_id bigint, kid text, public_key_pem text, token bigint,
    acquired_at timestamptz, expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    room integer;
    pending record;
    granted record;
BEGIN
    PERFORM keyring_lock();
    IF p_release_lease_id IS NOT NULL THEN
        PERFORM keyring_release_lease(p_release_lease_id, 'completed');
    END IF;
    -- In flight: keys held. One run is active at a time, so they are all this run's; and a
    -- key stays held from its batch's lease until SigningCompleted releases it, so each
    -- completion frees exactly one place (counting leased batches freed it at the store,
    -- and neighbouring completions took two places or none).
    SELECT r.max_in_flight - (
        SELECT count(*) FROM keyring_signingkey k WHERE k.held_by_id IS NOT NULL
    ) INTO room
    FROM signing_signingrun r
    WHERE r.id = p_run_id AND r.status = 'running';
    IF room IS NULL OR room <= 0 THEN
        RETURN;
    END IF;
    FOR pending IN
        SELECT b.id, b.first_record_id, b.last_record_id
        FROM signing_batch b
        WHERE b.run_id = p_run_id AND b.status = 'pending'
        ORDER BY b.seq
        LIMIT room
        FOR NO KEY UPDATE SKIP LOCKED
    LOOP
        SELECT * INTO granted FROM keyring_lease_lru_key(pending.id, p_ttl_seconds);
        EXIT WHEN NOT FOUND;  -- every key is busy: the next release dispatches again
        UPDATE signing_batch
        SET status = 'leased', attempts = attempts + 1, leased_at = granted.acquired_at
        WHERE id = pending.id;
        batch_id := pending.id;
        first_record_id := pending.first_record_id;
        last_record_id := pending.last_record_id;
        lease_id := granted.lease_id;
        key_id := granted.key_id;
        kid := granted.kid;
        public_key_pem := granted.public_key_pem;
        token := granted.token;
        acquired_at := granted.acquired_at;
        expires_at := granted.expires_at;
        RETURN NEXT;
    END LOOP;
END;
$$;
