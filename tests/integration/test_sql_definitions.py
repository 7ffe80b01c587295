"""The database's functions and triggers are the ones in <app>/database/<vendor>/*.sql.

A migrated database must hold exactly what the files say: no object without a file, no file
without its object, no definition that differs from its file (kernel/sql_files.py).
"""

import importlib
import pkgutil
import re

import pytest
from django.apps import apps
from django.db import connection

from kernel.sql_files import VENDORS, RunSQLFile, sql_digest
from tests.sql_definitions import differences, sql_files

# Runs on both backends: the servers, and embedded mode (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("backend")


def database_differences() -> list[str]:
    with connection.cursor() as cursor:
        return differences(cursor, connection.vendor)


@pytest.mark.django_db
def test_the_migrated_database_holds_exactly_the_functions_and_triggers_of_the_files():
    assert database_differences() == []


@pytest.mark.django_db
def test_a_definition_that_is_not_its_files_is_found():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # another lock number: the keyring lock no more
            cursor.execute(
                "CREATE OR REPLACE FUNCTION keyring_lock() RETURNS void LANGUAGE sql VOLATILE"
                " AS $$ SELECT pg_advisory_xact_lock(1) $$"
            )
            changed = "keyring_lock"
        else:
            cursor.execute("DROP TRIGGER run_batch_size_immutable")
            cursor.execute(
                "CREATE TRIGGER run_batch_size_immutable BEFORE UPDATE OF batch_size"
                " ON signing_signingrun BEGIN SELECT 1; END"
            )
            changed = "run_batch_size_immutable"

    found = database_differences()

    assert len(found) == 1, found
    assert found[0].startswith(f"{changed} differs from its file:")


@pytest.mark.django_db
def test_a_function_or_trigger_without_a_file_is_found_and_so_is_a_file_without_its_object():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION stray_function() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RETURN NEW; END $$"
            )
            cursor.execute(
                "CREATE TRIGGER stray_trigger BEFORE INSERT ON records_record"
                " FOR EACH ROW EXECUTE FUNCTION stray_function()"
            )
            strays = ["stray_function", "stray_trigger"]
            cursor.execute("DROP FUNCTION signing_claim_batches")
            gone = "signing_claim_batches"
        else:
            cursor.execute(
                "CREATE TRIGGER stray_trigger BEFORE INSERT ON records_record BEGIN SELECT 1; END"
            )
            strays = ["stray_trigger"]
            cursor.execute("DROP TRIGGER signature_in_batch_on_insert")
            gone = "signature_in_batch_on_insert"

    found = database_differences()

    assert sorted(found) == sorted(
        [
            *(f"{stray} is in the database but has no file" for stray in strays),
            f"{sql_files(connection.vendor)[gone]}: no {gone} in the database",
        ]
    )


def test_each_file_makes_the_object_it_is_named_after_and_can_run_again():
    """A PostgreSQL file creates or replaces; a SQLite file is one CREATE TRIGGER, which the
    loader drops first. Either way, loading a file again in a later migration is safe."""
    for vendor in VENDORS:
        for name, path in sql_files(vendor).items():
            text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
            if vendor == "postgresql":
                made = re.search(r"CREATE OR REPLACE (?:FUNCTION|TRIGGER) (\w+)", text)
            else:
                made = re.fullmatch(r"\s*CREATE TRIGGER (\w+)\b.*\bEND;\s*", text, re.DOTALL)
            assert made, f"{path} does not create or replace an object the way {vendor} needs"
            assert made[1] == name, f"{path} makes {made[1]}, not {name}"


def test_every_file_is_loaded_by_a_migration_of_its_app():
    """A file no migration loads would be in no database (and in no release)."""
    for vendor in VENDORS:
        loaded = set()
        for label in ("keyring", "records", "signing"):
            package = importlib.import_module(f"{apps.get_app_config(label).name}.migrations")
            for module in pkgutil.iter_modules(package.__path__):
                migration = importlib.import_module(f"{package.__name__}.{module.name}")
                for operation in migration.Migration.operations:
                    if isinstance(operation, RunSQLFile) and operation.vendor == vendor:
                        assert operation.app_label == label, f"{module.name} loads another app's"
                        loaded |= {(label, name) for name in operation.names}
        files = {(path.parent.parent.parent.name, name) for name, path in sql_files(vendor).items()}
        assert loaded == files


def test_a_file_edited_since_its_latest_migration_is_found():
    """Each file's digest is the one recorded by the latest migration that loads it: a file
    edited without a new migration would change nothing in an upgraded database, while every
    fresh test database got the new text."""
    latest: dict[tuple[str, str, str], tuple[str, str]] = {}
    for label in ("keyring", "records", "signing"):
        package = importlib.import_module(f"{apps.get_app_config(label).name}.migrations")
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            migration = importlib.import_module(f"{package.__name__}.{module.name}")
            for operation in migration.Migration.operations:
                if isinstance(operation, RunSQLFile):
                    for name, digest in operation.digests.items():
                        latest[(label, operation.vendor, name)] = (module.name, digest)
    assert latest
    stale = [
        f"{label}/{vendor}/{name}.sql: {migration} recorded another digest"
        for (label, vendor, name), (migration, digest) in latest.items()
        if sql_digest(label, vendor, name) != digest
    ]
    assert stale == [], "edit a file only with a new migration that loads it: " + str(stale)


class StatementsKept:
    """A schema editor that keeps the statements it is given instead of running them."""

    def __init__(self) -> None:
        self.connection = connection
        self.statements: list[str] = []

    def execute(self, sql: str, params: object = None) -> None:
        self.statements.append(sql)


@pytest.mark.django_db
def test_a_migration_skips_a_file_edited_since_it_was_written_and_loads_one_that_was_not():
    """What a fresh database gets from a migration is the text that migration was written
    for: an object whose file changed since waits for the later migration that loads it."""
    vendor = connection.vendor
    name, path = next(iter(sql_files(vendor).items()))
    label = path.parent.parent.parent.name
    outdated, current = StatementsKept(), StatementsKept()
    RunSQLFile(vendor, label, {name: "0" * 64}).database_forwards(label, outdated, None, None)
    digest = sql_digest(label, vendor, name)
    RunSQLFile(vendor, label, {name: digest}).database_forwards(label, current, None, None)
    assert outdated.statements == []
    assert any(name in statement for statement in current.statements)
