"""manage.py cancel: stop the active run (or the one named)."""

from django.core.management.base import BaseCommand, CommandError

from kernel.cli import whole_number
from signing.management.cli import no_such_run
from signing.models import SigningRun
from signing.runs.dispatch import cancel_run
from signing.runs.exceptions import RunNotActive
from signing.runs.selectors import active_run


class Command(BaseCommand):
    help = (
        "Cancel the active run: its open leases are released and nothing more is signed; "
        "the records it did not sign wait for the next run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "run", nargs="?", type=whole_number(1), help="run id (default: the active run)"
        )

    def handle(self, *args, run: int | None, **options) -> None:
        if run is None:
            active = active_run()
            if active is None:
                raise CommandError("no run is active")
            run = active.pk
        if not cancel_run(run):
            status = SigningRun.objects.filter(pk=run).values_list("status", flat=True).first()
            if status is None:
                raise no_such_run(run)
            raise CommandError(str(RunNotActive(run, status)))
        self.stdout.write(f"run {run} cancelled")
