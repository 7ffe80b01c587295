-- record_append_only on SQLite: a record is never updated.
CREATE TRIGGER record_append_only_on_update
BEFORE UPDATE ON records_record
BEGIN
    SELECT RAISE(ABORT, 'record_append_only: a record is never updated');
END;
