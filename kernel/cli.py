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
