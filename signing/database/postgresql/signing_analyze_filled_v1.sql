-- The app role may ANALYZE the two tables a seed or a plan fills, and nothing else: only a
-- table's owner may ANALYZE it, so this runs as its owner (SECURITY DEFINER), with its
-- search_path fixed to the schema it was made in, then pg_temp. EXECUTE is the app role's
-- alone (granted by migrate), not PUBLIC's.
CREATE OR REPLACE FUNCTION signing_analyze_filled_v1(p_table text) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER AS $$
BEGIN
    IF p_table NOT IN ('records_record', 'signing_batch') THEN
        RAISE EXCEPTION 'signing_analyze_filled_v1 analyzes records_record or signing_batch, not %',
            p_table;
    END IF;
    EXECUTE format('ANALYZE %I', p_table);
END;
$$;

DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION signing_analyze_filled_v1(text) SET search_path = %I, pg_temp',
        current_schema()
    );
END;
$$;

REVOKE EXECUTE ON FUNCTION signing_analyze_filled_v1(text) FROM PUBLIC;
