-- Lease the least recently used free key to a batch; no row when every key is busy.
-- The token is the key's next fencing number; both times come from clock_timestamp(),
-- read under the lock, so lease and release times are totally ordered.
CREATE OR REPLACE FUNCTION keyring_lease_lru_key(p_batch_id bigint, p_ttl_seconds double precision)
RETURNS TABLE (
    lease_id bigint, key_id bigint, kid text, public_key_pem text, batch_id bigint,
    token bigint, acquired_at timestamptz, expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    chosen record;
    granted_at timestamptz;
BEGIN
    PERFORM keyring_lock();
    SELECT k.id, k.kid, k.public_key_pem INTO chosen
    FROM keyring_signingkey k
    WHERE k.enabled AND k.held_by_id IS NULL
    ORDER BY k.last_used_at ASC NULLS FIRST, k.id
    LIMIT 1
    FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    granted_at := clock_timestamp();
    INSERT INTO keyring_keylease AS l (key_id, batch_id, token, acquired_at, expires_at)
    VALUES (
        chosen.id,
        p_batch_id,
        COALESCE((SELECT MAX(t.token) FROM keyring_keylease t WHERE t.key_id = chosen.id), 0) + 1,
        granted_at,
        granted_at + make_interval(secs => p_ttl_seconds)
    )
    RETURNING l.id, l.key_id, chosen.kid, chosen.public_key_pem, l.batch_id, l.token,
              l.acquired_at, l.expires_at
    INTO lease_id, key_id, kid, public_key_pem, batch_id, token, acquired_at, expires_at;
    UPDATE keyring_signingkey SET held_by_id = lease_id WHERE id = chosen.id;
    RETURN NEXT;
END;
$$;
