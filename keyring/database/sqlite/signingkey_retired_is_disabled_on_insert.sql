-- signingkey_retired_is_disabled on SQLite, where adding the CHECK would rebuild the table
-- under the lease triggers that name it: a retired key (retired_at set) is never enabled.
CREATE TRIGGER signingkey_retired_is_disabled_on_insert
BEFORE INSERT ON keyring_signingkey
WHEN NEW.retired_at IS NOT NULL AND NEW.enabled
BEGIN
    SELECT RAISE(ABORT, 'signingkey_retired_is_disabled: a retired key is never enabled');
END;
