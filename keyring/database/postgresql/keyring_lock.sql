-- Take the keyring lock until the end of the transaction (crc32 of
-- 'keyring_signingkey lease lock').
CREATE OR REPLACE FUNCTION keyring_lock() RETURNS void
LANGUAGE sql VOLATILE AS $$ SELECT pg_advisory_xact_lock(1465065985) $$;
