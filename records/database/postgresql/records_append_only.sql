-- Records and signatures are append-only: a signature covers the payload the table holds, and
-- once stored is the proof of rule 1. TG_ARGV[0] names the constraint. TRUNCATE resets.
CREATE OR REPLACE FUNCTION records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: a row is never updated or deleted (TRUNCATE resets it)',
        TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = TG_ARGV[0],
              TABLE = TG_TABLE_NAME;
END;
$$;
