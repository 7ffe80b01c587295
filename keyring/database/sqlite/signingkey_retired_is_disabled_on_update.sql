-- signingkey_retired_is_disabled on SQLite: signingkey_retired_is_disabled_on_insert.sql,
-- for updates.
CREATE TRIGGER signingkey_retired_is_disabled_on_update
BEFORE UPDATE OF enabled, retired_at ON keyring_signingkey
WHEN NEW.retired_at IS NOT NULL AND NEW.enabled
BEGIN
    SELECT RAISE(ABORT, 'signingkey_retired_is_disabled: a retired key is never enabled');
END;
