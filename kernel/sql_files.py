"""Database functions and triggers live in files, one per object: SQL you can find.

Each app keeps the functions and triggers it owns in `<app>/database/<vendor>/<name>.sql`,
named after the object (`keyring/database/postgresql/keyring_lease_lru_key.sql`): PL/pgSQL
functions and triggers for PostgreSQL, row triggers for embedded mode's SQLite. The folder is
not `sql/` because `<app>/sql.py` modules hold the statements the code runs.

Migrations load the files with `RunSQLFile`, naming each object they (re)create with the
SHA-256 of the file they were written against, so a file is the one place an object's
definition is read and written. Applied migrations are never edited: to change an object,
edit its file and add a migration that loads it again with the new digest (a new, versioned
name instead, as `signing_claim_batches_v2`, where old and new callers must not mix).
tests/integration/test_sql_definitions.py compares a migrated database with the files, and
fails when a file's digest is not the one the latest migration loading it recorded: a file
edited without its migration.

An earlier migration whose file has been edited since (its digest no longer matches) skips
that object: the later migration that recorded the new digest makes it, so a fresh database
and an upgraded one end with the same definition, and no migration runs text written for a
schema it does not have yet.

A file recreates its object whatever was there before, so loading it again is harmless:
- PostgreSQL: `CREATE OR REPLACE FUNCTION` / `CREATE OR REPLACE TRIGGER` (PostgreSQL 14+),
  plus whatever else the object needs (signing_analyze_filled_v1 fixes its search_path and
  revokes PUBLIC's EXECUTE). Replacing a function keeps its owner and grants.
- SQLite has neither functions nor `OR REPLACE` for triggers: every file there is one
  `CREATE TRIGGER`, and the loader drops the trigger of that name first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from django.apps import apps
from django.db.migrations.operations.base import Operation, OperationCategory

FOLDER = "database"
VENDORS = ("postgresql", "sqlite")


def sql_path(app_label: str, vendor: str, name: str) -> Path:
    """Where the definition of `name` on `vendor` lives, in the app labelled `app_label`."""
    if vendor not in VENDORS:
        raise ValueError(f"no SQL files for database vendor {vendor!r}: one of {VENDORS}")
    return Path(apps.get_app_config(app_label).path) / FOLDER / vendor / f"{name}.sql"


def sql_text(app_label: str, vendor: str, name: str) -> str:
    """The SQL that (re)creates `name` on `vendor`, as its file holds it."""
    return sql_path(app_label, vendor, name).read_text(encoding="utf-8")


def sql_digest(app_label: str, vendor: str, name: str) -> str:
    """The SHA-256 of `name`'s file, as a migration records it."""
    return hashlib.sha256(sql_path(app_label, vendor, name).read_bytes()).hexdigest()


def replacing_statements(connection, app_label: str, vendor: str, name: str) -> list[str]:
    """The statements that (re)create `name` from its file on `connection`, split as Django
    splits a RunSQL script."""
    script = sql_text(app_label, vendor, name)
    if vendor == "sqlite":
        script = f'DROP TRIGGER IF EXISTS "{name}";\n{script}'
    return connection.ops.prepare_sql_script(script)


class RunSQLFile(Operation):
    """(Re)create database objects from their files, on one database vendor only.

    `RunSQLFile("postgresql", "keyring", {"keyring_lock": "<sha256>", ...})` runs
    keyring/database/postgresql/keyring_lock.sql, and so on in the order given (a function
    before the triggers that call it); on any other vendor it does nothing. The digest is the
    file's as this migration was written (`sql_digest`): an object whose file has changed
    since is skipped here and made by the later migration that loads the new text; the test
    of the files holds the latest migration of each file to its digest. The migration
    names every object it loads, so that a fresh database gets, migration by migration, the
    objects each one names and no object of a later one.

    Going backwards leaves the objects as they are: a file holds one definition, today's, so
    there is no earlier one to go back to (the migrations before this one made the objects;
    the migration that drops one says so itself).
    """

    category = OperationCategory.SQL
    reduces_to_sql = True
    reversible = True

    def __init__(self, vendor: str, app_label: str, digests: Mapping[str, str]) -> None:
        if vendor not in VENDORS:
            raise ValueError(f"no SQL files for database vendor {vendor!r}: one of {VENDORS}")
        self.vendor = vendor
        self.app_label = app_label
        self.digests = dict(digests)
        self.names = list(self.digests)

    def deconstruct(self):
        return self.__class__.__name__, [self.vendor, self.app_label, self.digests], {}

    def state_forwards(self, app_label, state) -> None:
        """The files hold functions and triggers, which Django's model state does not track."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        connection = schema_editor.connection
        if connection.vendor != self.vendor:
            return
        for name, digest in self.digests.items():
            if sql_digest(self.app_label, self.vendor, name) != digest:
                # The file was edited since this migration was written: a later migration
                # loads the new text (the test of the files holds the latest to its
                # digest). Running it here could need what only later migrations make.
                continue
            for statement in replacing_statements(connection, self.app_label, self.vendor, name):
                schema_editor.execute(statement, params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        """Nothing to undo: see the class's docstring."""

    def describe(self) -> str:
        return (
            f"Create or replace {', '.join(self.names)} from "
            f"{self.app_label}/{FOLDER}/{self.vendor}/ ({self.vendor} only)"
        )

    @property
    def migration_name_fragment(self) -> str:
        return f"sql_files_{self.vendor}"
