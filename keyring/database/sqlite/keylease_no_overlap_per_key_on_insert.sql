-- Rule 2 on SQLite (PostgreSQL: the exclusion constraint keylease_no_overlap_per_key): no two
-- leases of one key overlap in time, each the half-open range [acquired_at, released_at).
-- Datetimes are ISO text in UTC, which compares in time order.
CREATE TRIGGER keylease_no_overlap_per_key_on_insert
BEFORE INSERT ON keyring_keylease
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
