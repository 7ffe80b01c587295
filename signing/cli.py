"""What the management commands share: argument types (argparse names them in its errors)
and the question asked before a command deletes data."""

import sys
from collections.abc import Callable
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from keyring import sealing
from keyring.exceptions import KekError
from records.selectors import Inventory, inventory
from signing.dispatch import check_broker_reachable
from signing.exceptions import NotReadyToSign


def whole_number(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise ValueError(text)
        return value

    parse.__name__ = f"whole number (at least {minimum})"
    return parse


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


def kek_once_the_broker_answers() -> bytes:
    """SIGNING_KEK, checked along with the broker before a command that reseeds deletes
    anything: one that could not go on must leave the database as it was."""
    try:
        kek = sealing.kek_from_environment()
        check_broker_reachable()
    except (KekError, NotReadyToSign) as error:
        raise CommandError(str(error)) from None
    return kek


def confirm_reset(command: BaseCommand, *, reset: bool, verb: str) -> Inventory:
    """Go on only if this invocation said to delete what the database holds; return what
    that is (for the caller to say, once it is done).

    Nothing to delete, or `--reset` given: go on. On a terminal: ask, and go on only on
    "yes". Otherwise refuse, saying what would have been deleted.
    """
    held = inventory()
    if held.empty or reset:
        return held
    if sys.stdin.isatty():
        command.stdout.write(f"This database holds {held}: {verb} deletes them all.")
        if input("Type yes to delete them: ").strip().lower() == "yes":
            return held
        raise CommandError("nothing deleted")
    raise CommandError(
        f"this database holds {held}: {verb} would delete them all. Give --reset to delete "
        "them, or point DATABASE_URL (or SIGNING_DATABASE_NAME) at another database"
    )
