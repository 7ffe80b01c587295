-- A follow run's cut (signing.runs.follow) must never make a batch range that a record not
-- yet committed could later fall into: record ids come from a sequence, and two inserting
-- transactions can commit in the other order. SHARE mode conflicts with the ROW EXCLUSIVE
-- lock every INSERT (and COPY) holds until its transaction ends, so taking it waits for
-- every insert in flight to commit or roll back, and holds new ones off until the cut's
-- transaction ends. The app role may not take it itself (PostgreSQL asks for UPDATE,
-- DELETE or TRUNCATE on the table for SHARE mode, and records_record is append-only), so
-- this runs as the table's owner (SECURITY DEFINER), with its search_path fixed to the
-- schema it was made in, then pg_temp. EXECUTE is the app role's alone (granted by
-- migrate), not PUBLIC's. The lock lasts until the caller's transaction ends.
CREATE OR REPLACE FUNCTION signing_lock_record_inserts_v1() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    LOCK TABLE records_record IN SHARE MODE;
END;
$$;

DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION signing_lock_record_inserts_v1() SET search_path = %I, pg_temp',
        current_schema()
    );
END;
$$;

REVOKE EXECUTE ON FUNCTION signing_lock_record_inserts_v1() FROM PUBLIC;
