"""Least privilege on PostgreSQL: the owner migrates and resets, the app role does the work.

Two roles (docs/architecture.md, "Database roles"; docs/deployment.md for compose):

- **The owner** (DATABASE_OWNER_URL, or DATABASE_URL's role when that is unset): `migrate`
  runs as it, so it owns every table, sequence and function; it alone changes the schema
  or TRUNCATEs.
- **The app role** (SIGNING_DB_APP_ROLE, `signing_app` by default): what the web app, the
  workers, the seeder and the executor connect as. It reads and writes rows, uses the
  sequences, runs the functions the migrations define (the keyring's lease functions,
  signing_claim_batches_v3, signing_analyze_filled_v1) and makes temporary tables (a big
  batch's signatures are staged in one: signing.runs.store.SignatureStage). Nothing else: no
  DDL, no TRUNCATE, no superuser; no UPDATE or DELETE on the append-only records and
  signatures, no DELETE of lease history, no write to django_migrations.

Resets run as the owner, on the owner's connection for the whole command (`connect_as_owner`),
not through a SECURITY DEFINER function the app role could call: such a function would give
the web tier and every worker the power to wipe every record and signature in one call,
which is exactly what a compromised web tier must not have. A reset is an operator's act,
so it needs the owner's credentials. The whole command moves to the owner's connection,
not only its TRUNCATE: `seed_database` resets and reseeds in one transaction under the
keyring lock, and a second connection for the TRUNCATE would wait on the locks the first
one holds (and split one transaction into two).

ANALYZE needs the owner too (PostgreSQL skips a table its caller does not own, with a
warning), and planning a run wants fresh statistics whoever starts it: the app role calls
signing_analyze_filled_v1 (migration signing 0008), a SECURITY DEFINER function that
analyzes the two tables a seed or a plan fills, and nothing else.

Grants follow future migrations twice over: ALTER DEFAULT PRIVILEGES gives the app role
rows in every table the owner creates later, and `grant_app_role` runs after every
`migrate` (signing.apps) to set the exact set again.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from psycopg import sql

from kernel.events import EventLogger

log = EventLogger(__name__)

# The credentials DATABASE_OWNER_URL contributes; the database's name stays the one this
# process uses (SIGNING_DATABASE_NAME, or the test database).
OWNER_CONNECTION_KEYS = ("USER", "PASSWORD", "HOST", "PORT")
# Tables whose rows are never changed or deleted (their triggers refuse it too): the app
# role may read and insert only.
APPEND_ONLY_TABLES = ("records_record", "records_signature")
# The lease history is updated (release, heartbeat) but never deleted.
HISTORY_TABLES = ("keyring_keylease",)
# Which migrations ran is the owner's to write.
READ_ONLY_TABLES = ("django_migrations",)
INSUFFICIENT_PRIVILEGE = "42501"


def connect_as_owner(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Point this process's connection at the owner (DATABASE_OWNER_URL) from here on;
    False, changing nothing, when no owner URL is set or the database is not PostgreSQL.

    Call it before the command's first query: an open connection is closed first.
    """
    owner = settings.SIGNING_OWNER_DATABASE
    connection = connections[using]
    if owner is None or connection.vendor != "postgresql":
        return False
    connection.close()
    connection.settings_dict.update({key: owner.get(key, "") for key in OWNER_CONNECTION_KEYS})
    return True


def insufficient_privilege(error: BaseException) -> bool:
    """Whether PostgreSQL refused a statement for want of a privilege."""
    cause = error.__cause__ if isinstance(error, DatabaseError) else error
    return getattr(cause, "sqlstate", None) == INSUFFICIENT_PRIVILEGE


def create_app_role(cursor, *, role: str, password: str) -> bool:
    """Create the app role, able to log in and nothing more, unless it exists; True if it
    was created. Needs CREATEROLE (the local superuser has it; in compose the database's
    init script creates the role instead)."""
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    if cursor.fetchone():
        return False
    statement = sql.SQL(
        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    ).format(sql.Identifier(role))
    if password:
        statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    cursor.execute(statement)
    return True


def grant_app_role(*, role: str, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Give `role` exactly what the app needs on this database (the module says what);
    False, doing nothing, when the role does not exist. Idempotent: what it held before is
    revoked first, in the same transaction. Run as the owner (after `migrate`)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = %s", [role]
        )
        found = cursor.fetchone()
        if found is None:
            return False
        superuser, is_current_user = found
        if is_current_user:
            raise ImproperlyConfigured(
                f"SIGNING_DB_APP_ROLE ({role}) is the role migrate runs as: the app role must "
                "not own the schema. Migrate as the owner (DATABASE_OWNER_URL)"
            )
        if superuser:
            raise ImproperlyConfigured(f"SIGNING_DB_APP_ROLE ({role}) is a superuser")
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        # A database migrated part of the way (`migrate signing 0007`) lacks some tables:
        # the privileges of those it has are set, the others' when a later migrate makes them.
        cursor.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
        )
        existing = {name for (name,) in cursor.fetchall()}
        raw = connection.connection
        for statement in _grants(role=role, database=database, schema=schema, existing=existing):
            cursor.execute(statement.as_string(raw))
        cursor.execute("SELECT has_schema_privilege(%s, current_schema(), 'CREATE')", [role])
        if cursor.fetchone()[0]:
            # Through PUBLIC (PostgreSQL before 15 gave every role CREATE on `public`).
            _revoke_create_from_public(cursor, role=role, schema=schema)
    log.info("roles.granted", role=role, database=database)
    return True


def _grants(*, role: str, database: str, schema: str, existing: set[str]) -> list[sql.Composable]:
    to = sql.Identifier(role)
    db, sch = sql.Identifier(database), sql.Identifier(schema)

    def tables(names: tuple[str, ...]) -> sql.Composable | None:
        present = [sql.Identifier(schema, name) for name in names if name in existing]
        return sql.SQL(", ").join(present) if present else None

    dml = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
    return [
        sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, to),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, to),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(sch, to),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sch, to),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(sch, to),
        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(dml, sch, to),
        *(
            sql.SQL("REVOKE {} ON {} FROM {}").format(sql.SQL(privileges), named, to)
            for privileges, names in (
                ("UPDATE, DELETE", APPEND_ONLY_TABLES),
                ("DELETE", HISTORY_TABLES),
                ("INSERT, UPDATE, DELETE", READ_ONLY_TABLES),
            )
            if (named := tables(names)) is not None
        ),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(sch, to),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(sch, to),
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {}").format(sch, to),
        # Whatever the owner creates later (a future migration) is the app's to use too.
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
            sch, dml, to
        ),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(sch, to),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT EXECUTE ON FUNCTIONS TO {}").format(
            sch, to
        ),
    ]


def _revoke_create_from_public(cursor, *, role: str, schema: str) -> None:
    """Take CREATE on the schema from PUBLIC, when this role may; else say it is left."""
    cursor.execute(
        "SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = %s",
        [schema],
    )
    if cursor.fetchone()[0]:
        cursor.execute(
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC")
            .format(sql.Identifier(schema))
            .as_string(cursor.connection)
        )
        return
    log.warning("roles.public_may_create", role=role, schema=schema)


class ResetNeedsOwner(Exception):
    """This role may not TRUNCATE (it is the app role): only the database owner resets."""

    def __init__(self) -> None:
        super().__init__(
            "this database role may not reset (TRUNCATE): resets are the database owner's. "
            "Set DATABASE_OWNER_URL to the owner's URL (docs/architecture.md, Database roles)"
        )
