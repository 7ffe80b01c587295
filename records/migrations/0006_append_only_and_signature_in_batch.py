"""Records and signatures are append-only, and a signature lies inside its batch's range.

- record_append_only, signature_append_only: no UPDATE or DELETE, ever. A record's payload is
  what its signature covers, and workers read it from this table under their lease: were it
  changed between that read and the store (or after), a stored signature would cover text
  the database no longer holds. A signature, once stored, is the proof of rule 1. Resets
  (`seed --reset`, `demo --reset`) use TRUNCATE, which row triggers do not see.
- signature_in_batch: every signature a statement writes names a record inside its batch's
  range [first_record_id, last_record_id]. Checked once per statement over the rows written,
  like signature_matches_lease (0004); a forged message could once file records of another
  batch under this one. Workers now read their records from the database, so this is the
  database's own word on it, not the only guard.
"""

from django.db import migrations

from signing.vendor import POSTGRESQL, RunSQLFor

FORWARD = r"""
CREATE FUNCTION records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: a row is never updated or deleted (TRUNCATE resets it)',
        TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = TG_ARGV[0],
              TABLE = TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER record_append_only
    BEFORE UPDATE OR DELETE ON records_record
    FOR EACH ROW EXECUTE FUNCTION records_append_only('record_append_only');
CREATE TRIGGER signature_append_only
    BEFORE UPDATE OR DELETE ON records_signature
    FOR EACH ROW EXECUTE FUNCTION records_append_only('signature_append_only');

CREATE FUNCTION records_signature_in_batch() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    stray record;
BEGIN
    SELECT w.record_id, w.batch_id INTO stray
    FROM written w LEFT JOIN signing_batch b ON b.id = w.batch_id
    WHERE b.id IS NULL OR w.record_id NOT BETWEEN b.first_record_id AND b.last_record_id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'the signature of record % names batch %, whose range does not hold it',
            stray.record_id, stray.batch_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'signature_in_batch',
                  TABLE = 'records_signature';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER signature_in_batch_on_insert
    AFTER INSERT ON records_signature REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION records_signature_in_batch();
"""

BACKWARD = r"""
DROP TRIGGER IF EXISTS signature_in_batch_on_insert ON records_signature;
DROP FUNCTION IF EXISTS records_signature_in_batch();
DROP TRIGGER IF EXISTS signature_append_only ON records_signature;
DROP TRIGGER IF EXISTS record_append_only ON records_record;
DROP FUNCTION IF EXISTS records_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0005_sqlite_triggers"),
        ("signing", "0007_claim_batches_v2"),
    ]

    operations = [RunSQLFor(POSTGRESQL, FORWARD, BACKWARD)]
