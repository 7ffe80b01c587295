"""What differs between PostgreSQL and embedded mode's SQLite, in one place.

The rules hold on both: where PostgreSQL enforces one with a function, an advisory lock
or an exclusion constraint, SQLite gets a trigger, or the same steps in Python inside a
BEGIN IMMEDIATE transaction (which holds SQLite's one write lock: the keyring lock's
counterpart). docs/architecture.md has the table of counterparts.
"""

from __future__ import annotations

import re

from django.contrib.postgres.constraints import ExclusionConstraint
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, migrations
from django.db.models import functions
from django.utils import timezone

POSTGRESQL = "postgresql"
SQLITE = "sqlite"


class RunSQLFor(migrations.RunSQL):
    """RunSQL on one database vendor; on any other it does nothing.

    Each vendor gets its own enforcement of a rule (PL/pgSQL functions and statement
    triggers on PostgreSQL, row triggers on SQLite); the migration graph stays one.
    """

    def __init__(self, vendor: str, sql, reverse_sql=None, **kwargs) -> None:
        self.vendor = vendor
        super().__init__(sql, reverse_sql, **kwargs)

    def deconstruct(self):
        name, args, kwargs = super().deconstruct()
        return name, [self.vendor, *args], kwargs

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == self.vendor:
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == self.vendor:
            super().database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"Raw SQL operation ({self.vendor} only)"


def constraint_name(error: IntegrityError) -> str | None:
    """The name of the constraint an IntegrityError broke, on either database.

    PostgreSQL says it outright. SQLite says it in its message: a named CHECK by name, a
    unique index on expressions by name, any other unique index by its columns (looked up
    here; a primary key gets PostgreSQL's name for it, `<table>_pkey`), and our triggers
    start their messages with the name of the constraint they stand for.
    """
    diag = getattr(error.__cause__, "diag", None)
    if diag is not None:
        return getattr(diag, "constraint_name", None)
    message = str(error)
    if match := _SQLITE_FAILED.match(message):
        kind, detail = match.groups()
        if detail.startswith("index '"):
            return detail.removeprefix("index '").removesuffix("'")
        return _unique_by_columns(detail) if kind == "UNIQUE" else detail
    if match := _TRIGGER_MESSAGE.match(message):
        return match[1]
    return None


_SQLITE_FAILED = re.compile(r"(CHECK|UNIQUE) constraint failed: (.+)$")
_TRIGGER_MESSAGE = re.compile(r"([a-z_]+): ")


def _unique_by_columns(detail: str) -> str | None:
    """`table.a, table.b` -> the name of the unique constraint on exactly those columns."""
    qualified = [column.strip().split(".", 1) for column in detail.split(",")]
    table = qualified[0][0]
    columns = [column for _, column in qualified]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    for name, constraint in constraints.items():
        if (constraint["unique"] or constraint["primary_key"]) and constraint["columns"] == columns:
            return f"{table}_pkey" if constraint["primary_key"] else name
    return None


class Now(functions.Now):
    """The database's `now()`; on SQLite, this process's clock to the microsecond.

    SQLite's own clock reads to the millisecond, coarser than the times stored beside it
    (records, leases), so comparisons with them would be off inside one millisecond.
    """

    def as_sqlite(self, compiler, connection, **extra_context):
        return "%s", [connection.ops.adapt_datetimefield_value(timezone.now())]


class PostgresExclusionConstraint(ExclusionConstraint):
    """An exclusion constraint on PostgreSQL; on SQLite, which has none, a trigger of the
    same name enforces it (keyring migration 0006), and this creates nothing."""

    def constraint_sql(self, model, schema_editor):
        if schema_editor.connection.vendor != POSTGRESQL:
            return None
        return super().constraint_sql(model, schema_editor)

    def create_sql(self, model, schema_editor):
        if schema_editor.connection.vendor != POSTGRESQL:
            return None
        return super().create_sql(model, schema_editor)

    def remove_sql(self, model, schema_editor):
        if schema_editor.connection.vendor != POSTGRESQL:
            return None
        return super().remove_sql(model, schema_editor)

    def validate(self, model, instance, exclude=None, using=DEFAULT_DB_ALIAS) -> None:
        if connections[using].vendor == POSTGRESQL:
            super().validate(model, instance, exclude=exclude, using=using)
