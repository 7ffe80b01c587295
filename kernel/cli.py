"""What every app's management commands share: argument types (argparse names them in its
errors), the measured-run arguments, and the check that the database is migrated."""

from collections.abc import Callable
from pathlib import Path

from django.core.management.base import CommandError


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    parse.__name__ = f"whole number (at least {minimum})"
    return parse


def amount(count: int, plural: str) -> str:
    """`count` and the noun it counts, singular for one: "1 batch", "2 batches", "0 keys"."""
    singular = plural[:-2] if plural.endswith(("ches", "shes", "sses", "xes")) else plural[:-1]
    return f"{count:,} {plural if count != 1 else singular}"


def add_measured_run_arguments(parser) -> None:
    """The arguments `bench` and `loadtest` share: what they seed, how many workers sign it,
    where the figures go, and the consent to delete what the database holds."""
    parser.add_argument("--records", type=whole_number(1), default=100_000)
    parser.add_argument("--keys", type=whole_number(1), default=100)
    parser.add_argument("--workers", type=whole_number(1), default=2, help="worker processes")
    parser.add_argument("--threads", type=whole_number(1), default=4, help="threads each")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--reset",
        action="store_true",
        help="delete the records, signatures, runs and keys the database holds",
    )


def refuse_an_unmigrated_database() -> None:
    """Stop, saying what to run, when the database lacks a migration this code needs (code
    upgraded, `migrate` not run yet): otherwise the first statement that needs it fails with
    a raw SQL error (a function or column that does not exist). About 60 ms."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in pending[:3])
        names += ", …" if len(pending) > 3 else ""
        raise CommandError(
            f"the database {connection.settings_dict['NAME']} lacks {len(pending)} "
            f"migration(s) ({names}): run `manage.py migrate` first"
        )


def database_problem(error: BaseException) -> str | None:
    """One line, saying what to run, for a command whose database cannot be opened (not
    created yet, the server down, a wrong DATABASE_URL) or lacks a migration; None for any
    other error. manage.py prints it instead of a traceback (`--traceback` shows that)."""
    from django.conf import settings
    from django.db import DatabaseError, OperationalError

    name = settings.DATABASES["default"]["NAME"]
    if isinstance(error, DatabaseError) and _is_missing_schema(error):
        missing = str(error).splitlines()[0]
        return (
            f"the database {name} lacks a migration this code needs ({missing}): "
            "run `manage.py migrate` first"
        )
    if not isinstance(error, OperationalError):
        return None
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines or not any(marker in lines[0] for marker in UNREACHABLE_MARKERS):
        return None
    text = " ".join(lines)  # libpq: "... failed: FATAL:  database "x" does not exist"
    if "FATAL:" in text:
        reason = " ".join(text.rsplit("FATAL:", 1)[-1].split())
    else:  # 'connection to server at "h", port 5432 failed: Connection refused', then a hint
        reason = lines[0].removeprefix("connection failed: ")
    if "does not exist" in reason:
        advice = (
            "create it with `manage.py ensure_db` and `manage.py migrate` "
            "(`make workers` runs both)"
        )
    else:
        advice = "start PostgreSQL, or point DATABASE_URL at one that runs"
    return f"cannot open the database {name} ({reason}): {advice}"


def _is_missing_schema(error: BaseException) -> bool:
    """A table, column or function the code names and the database lacks: code newer than
    the database's migrations (psycopg's Undefined* errors; SQLite's "no such ...")."""
    cause = type(error.__cause__).__name__
    return cause in MISSING_SCHEMA or str(error).startswith(("no such table", "no such column"))


MISSING_SCHEMA = {"UndefinedTable", "UndefinedColumn", "UndefinedFunction"}
# How psycopg and sqlite3 begin the error of a connection that could not be made.
UNREACHABLE_MARKERS = ("connection failed", "connection to server", "unable to open database")
