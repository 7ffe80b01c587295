"""What every measuring command does before it deletes the database and seeds it afresh
(bench, loadtest, follow_latency, merkle_cost --hot-path): checks first, then the consent."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from rich.console import Console

from kernel.cli import refuse_an_unmigrated_database
from kernel.roles import connect_as_owner
from records.selectors import Inventory
from signing.management.cli import confirm_reset, kek_once_the_broker_answers
from signing.models import SigningRun


def consent_to_reset(
    command: BaseCommand, *, reset: bool, verb: str, needs_servers: bool = False
) -> Inventory:
    """Refuse, in one line and before anything is deleted, what would make the measurement
    fail halfway (embedded mode for a tool whose web server is a process, an unmigrated
    database, an active run, no broker or KEK); then go on only with the consent to delete
    what the database holds (signing.management.cli.confirm_reset). The reset is the
    owner's: connect as the owner when OWNER_DATABASE_URL names one. Returns what was held,
    for the caller to say once it is deleted."""
    if needs_servers and settings.SIGNING_EMBEDDED:
        raise CommandError(f"{verb} needs the servers: its web server is a process")
    connect_as_owner()  # its workers and web server connect as DATABASE_URL says
    refuse_an_unmigrated_database()
    if SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).exists():
        raise CommandError(f"a run is active: {verb} resets the database")
    kek_once_the_broker_answers()
    return confirm_reset(command, reset=reset, verb=verb)


def console_for(command: BaseCommand) -> Console:
    """A console on the command's stdout: as wide as a terminal, or 150 columns in a file."""
    out = command.stdout._out
    return Console(file=out, soft_wrap=True, width=None if out.isatty() else 150)
