"""What the signing commands share before they delete or sign: the KEK and the broker
checked first, the question asked before a command deletes data, and one error for a run
id that names no run."""

import sys

from django.core.management.base import BaseCommand, CommandError

from keyring import sealing
from keyring.exceptions import KekError
from records.selectors import Inventory, inventory
from signing.models import SigningRun
from signing.runs.dispatch import check_broker_reachable
from signing.runs.exceptions import NotReadyToSign, RunNotFound


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


def no_such_run(run_id: int) -> CommandError:
    """The one error of every command given a run id that names no run (`audit --run`,
    `export --run`, `cancel`, `stop`): the same words, exit status 2 (bad input)."""
    return CommandError(str(RunNotFound(run_id)), returncode=2)


def require_run(run_id: int) -> None:
    """Stop with no_such_run unless a run has this id."""
    if not SigningRun.objects.filter(pk=run_id).exists():
        raise no_such_run(run_id)
