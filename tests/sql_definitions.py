"""Does a migrated database hold exactly the functions and triggers its files define?

Shared by tests/integration/test_sql_definitions.py (the tests' database) and
tests/integration/test_upgrade.py (a database of the first release, migrated since).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from django.apps import apps

from kernel.sql_files import FOLDER


def sql_files(vendor: str) -> dict[str, Path]:
    """Every installed app's files for `vendor`, by object name (names are unique across apps,
    as the database needs them to be: trigger names on SQLite, function names everywhere)."""
    found: dict[str, Path] = {}
    for config in apps.get_app_configs():
        for path in sorted((Path(config.path) / FOLDER / vendor).glob("*.sql")):
            if path.stem in found:
                raise ValueError(f"{path} and {found[path.stem]} both define {path.stem}")
            found[path.stem] = path
    return found


# Our schema's functions (not an extension's, such as btree_gist's) and triggers (not the
# internal ones behind foreign keys), each as PostgreSQL prints it back: pg_get_functiondef
# and pg_get_triggerdef, which read the catalog, not the text that made the object.
POSTGRESQL_DEFINITIONS = """
SELECT p.proname, pg_get_functiondef(p.oid)
FROM pg_proc p
WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind IN ('f', 'p')
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  )
UNION ALL
SELECT t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace
"""

SQLITE_DEFINITIONS = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"


def differences(cursor, vendor: str) -> list[str]:
    """What differs between the database `cursor` reads and the files for `vendor`: an
    object without a file, a file without its object, a definition that is not the file's.
    Empty when they agree. On PostgreSQL, call it inside a transaction."""
    files = sql_files(vendor)
    if vendor == "postgresql":
        return _postgresql_differences(cursor, files)
    cursor.execute(SQLITE_DEFINITIONS)
    found = dict(cursor.fetchall())
    problems = _unpaired(found, files)
    for name in sorted(found.keys() & files.keys()):
        in_file = re.sub(r"--[^\n]*\n", "", files[name].read_text(encoding="utf-8"))
        if sqlite_normalized(found[name]) != sqlite_normalized(in_file):
            problems.append(_diff(name, files[name], found[name], in_file.strip()))
    return problems


def _postgresql_differences(cursor, files: dict[str, Path]) -> list[str]:
    """Run each file over the database and see whether anything changes, then undo it.

    PostgreSQL keeps a function's body as written but prints its header and a trigger's WHEN
    clause its own way, so the file is compared through PostgreSQL itself: the definitions
    read before and after the file ran must be the same, the file's object's and every other.
    """
    before = _postgresql_definitions(cursor)
    problems = _unpaired(before, files)
    for name in sorted(before.keys() & files.keys()):
        cursor.execute("SAVEPOINT sql_definitions")
        try:
            cursor.execute(files[name].read_text(encoding="utf-8"))
            after = _postgresql_definitions(cursor)
        finally:
            cursor.execute("ROLLBACK TO SAVEPOINT sql_definitions")
        if after.get(name, "") != before[name]:
            problems.append(_diff(name, files[name], before[name], after.get(name, "")))
        if others := sorted(
            n for n in before.keys() | after.keys() if n != name and before.get(n) != after.get(n)
        ):
            problems.append(f"{files[name]} also changes {', '.join(others)}")
    return problems


def _postgresql_definitions(cursor) -> dict[str, str]:
    """Each object's definition by name (a function of several signatures: all of them)."""
    cursor.execute(POSTGRESQL_DEFINITIONS)
    definitions: dict[str, list[str]] = {}
    for name, definition in cursor.fetchall():
        definitions.setdefault(name, []).append(definition)
    return {name: "\n".join(sorted(found)) for name, found in definitions.items()}


def _unpaired(found: dict[str, str], files: dict[str, Path]) -> list[str]:
    return [
        *(
            f"{name} is in the database but has no file"
            for name in sorted(found.keys() - files.keys())
        ),
        *(
            f"{files[name]}: no {name} in the database"
            for name in sorted(files.keys() - found.keys())
        ),
    ]


def sqlite_normalized(sql: str) -> str:
    """A trigger's SQL without comments, runs of whitespace, or a closing semicolon. (None of
    our triggers has `--` inside a string.)"""
    return " ".join(re.sub(r"--[^\n]*", " ", sql).split()).removesuffix(";").rstrip()


def _diff(name: str, path: Path, database: str, file: str) -> str:
    lines = difflib.unified_diff(
        database.splitlines(), file.splitlines(), "database", str(path), lineterm=""
    )
    return f"{name} differs from its file:\n" + "\n".join(lines)
