"""signing_analyze_filled_v1: the app role may ANALYZE the two tables a seed or a plan fills.

PostgreSQL lets only a table's owner ANALYZE it (anyone else gets a warning and nothing is
analyzed), and since the web app and the workers connect as a role that owns nothing
(signing/roles.py), a run planned from the dashboard would be planned on stale statistics.
This function runs as its owner (SECURITY DEFINER; the owner runs the migrations) and
analyzes records_record or signing_batch, nothing else. Its search_path is fixed to the
schema it was made in, then pg_temp, so no table of the caller's can stand in for ours.
EXECUTE is the app role's alone (signing.roles.grant_app_role), not PUBLIC's.
"""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor

FORWARD = r"""
CREATE FUNCTION signing_analyze_filled_v1(p_table text) RETURNS void
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
"""

BACKWARD = "DROP FUNCTION IF EXISTS signing_analyze_filled_v1(text);"


class Migration(migrations.Migration):
    dependencies = [
        ("signing", "0007_claim_batches_v2"),
        ("records", "0007_sqlite_append_only_and_signature_in_batch"),
    ]

    operations = [RunSQLFor(POSTGRESQL, FORWARD, BACKWARD)]
