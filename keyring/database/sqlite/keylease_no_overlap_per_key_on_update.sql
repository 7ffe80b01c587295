-- Rule 2 on SQLite: keylease_no_overlap_per_key_on_insert.sql, for updates.
CREATE TRIGGER keylease_no_overlap_per_key_on_update
BEFORE UPDATE OF key_id, acquired_at, released_at ON keyring_keylease
BEGIN
    SELECT RAISE(ABORT, 'keylease_no_overlap_per_key: the key is leased at that time already')
    WHERE EXISTS (
        SELECT 1 FROM keyring_keylease other
        WHERE other.key_id = NEW.key_id AND other.id IS NOT NEW.id
          AND (other.released_at IS NULL OR other.released_at > NEW.acquired_at)
          AND (NEW.released_at IS NULL OR NEW.released_at > other.acquired_at)
          AND (other.released_at IS NULL OR other.released_at > other.acquired_at)
          AND (NEW.released_at IS NULL OR NEW.released_at > NEW.acquired_at)
    );
END;
