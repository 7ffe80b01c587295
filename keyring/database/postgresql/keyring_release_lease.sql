-- Close a lease still open and stamp its key as used at the same instant; return the
-- lease's batch id, or NULL when it was closed already (a redelivered completion).
CREATE OR REPLACE FUNCTION keyring_release_lease(p_lease_id bigint, p_outcome text) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    released record;
BEGIN
    PERFORM keyring_lock();
    UPDATE keyring_keylease SET released_at = clock_timestamp(), outcome = p_outcome
    WHERE id = p_lease_id AND released_at IS NULL
    RETURNING key_id, batch_id, released_at INTO released;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    UPDATE keyring_signingkey SET last_used_at = released.released_at, held_by_id = NULL
    WHERE id = released.key_id;
    RETURN released.batch_id;
END;
$$;
