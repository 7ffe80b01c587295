"""manage.py stop: stop a follow run gracefully (sign what has arrived, then complete)."""

from django.core.management.base import BaseCommand, CommandError

from kernel.cli import whole_number
from signing.management.cli import no_such_run
from signing.runs.exceptions import RunNotActive, RunNotFollowing, RunNotFound
from signing.runs.follow import stop_run


class Command(BaseCommand):
    help = (
        "Stop a follow run gracefully: the records that have arrived are cut and signed, "
        "then the run completes (`manage.py cancel` stops at once instead)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("run", type=whole_number(1), help="the follow run's id")

    def handle(self, *args, run: int, **options) -> None:
        try:
            stopped = stop_run(run)
        except RunNotFound:
            raise no_such_run(run) from None
        except (RunNotFollowing, RunNotActive) as error:
            raise CommandError(str(error)) from None
        if stopped.status == stopped.Status.RUNNING:
            self.stdout.write(
                f"run {run} stopping: {stopped.record_count:,} records taken in, "
                "signing what is left, then it completes"
            )
        else:
            self.stdout.write(f"run {run} {stopped.status}")
