-- Rules 2 and 4 are proven from the lease history: a lease is never deleted, and who held
-- what, when, never changes (its expiry, release time and outcome may). TRUNCATE still resets it.
CREATE OR REPLACE FUNCTION keyring_lease_history_kept() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lease % is history: it cannot be deleted, nor its key, batch, token or start changed',
        OLD.id
        USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'keylease_history_kept',
              TABLE = 'keyring_keylease';
END;
$$;
