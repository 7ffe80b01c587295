"""manage.py demo: seed, start workers, sign everything, audit, stop, summarize."""

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from records.selectors import record_totals
from signing.cli import whole_number
from signing.dispatch import check_broker_reachable
from signing.exceptions import NotReadyToSign
from signing.models import SigningRun
from signing.selectors import progress_of
from signing.workers import interrupt_on_termination, workers_for_this_mode


class Command(BaseCommand):
    help = (
        "Seed, sign every record with 2 worker processes (worker threads in embedded mode), "
        "audit, and print a summary."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--records", type=whole_number(1), default=100_000)
        parser.add_argument("--keys", type=whole_number(1), default=100)
        parser.add_argument(
            "--batch-size", type=whole_number(1), default=settings.SIGNING_BATCH_SIZE
        )
        parser.add_argument("--processes", type=whole_number(1), default=2)
        parser.add_argument("--threads", type=whole_number(1), default=4)

    def handle(self, *args, **options) -> None:
        try:  # before the reset: a demo that cannot sign must not empty the database
            check_broker_reachable()
        except NotReadyToSign as error:
            raise CommandError(str(error)) from None
        login = ensure_admin_user()
        call_command("seed", records=options["records"], keys=options["keys"], reset=True)
        log_file = Path(settings.BASE_DIR) / ".demo" / "workers.log"
        log_file.parent.mkdir(exist_ok=True)
        workers = workers_for_this_mode(
            processes=options["processes"], threads=options["threads"], log_file=log_file
        )
        self.stdout.write(f"starting {workers.describe()}")
        interrupt_on_termination()
        with workers:
            call_command("sign", batch_size=str(options["batch_size"]))
            workers.drain()  # embedded: the run's audit message lives in this process
        self.stdout.write("workers stopped")
        try:
            call_command("audit")
            audit_passed = True
        except SystemExit:
            audit_passed = False
        self.print_summary(audit_passed)
        self.stdout.write(f"  dashboard      make serve, then http://127.0.0.1:8000/ ({login})")
        if not audit_passed:
            raise CommandError("the audit found breaches (listed above)")

    def print_summary(self, audit_passed: bool) -> None:
        run = SigningRun.objects.order_by("-id").first()
        progress = progress_of(run)
        totals = record_totals()
        lines = [
            "",
            "Summary",
            f"  records        {totals['signed']:,} of {totals['records']:,} signed",
            f"  run            {run.pk}, {progress.status}, batch size {progress.batch_size:,}",
            f"  batches        {progress.batches_signed:,} signed, "
            f"{progress.batches_failed} failed",
            f"  keys used      {progress.keys_used}",
            f"  time           {progress.seconds:.2f} s "
            f"({progress.records_per_second:,.0f} records/s)",
            f"  audit          {'passed' if audit_passed else 'FAILED'}",
            "  verify one     .venv/bin/python manage.py export_signature 1 --out /tmp/sig "
            "(prints an openssl command)",
        ]
        self.stdout.write("\n".join(lines))


ADMIN_USERNAME = "admin"


def ensure_admin_user() -> str:
    """Make sure the dashboard has a user to log in with; say how to log in.

    The password is DJANGO_SUPERUSER_PASSWORD when set, otherwise a random one, printed
    once, when the user is first created; later demos leave it alone.
    """
    User = get_user_model()
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    if user is None:
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(ADMIN_USERNAME, password=password)
        return f"user {ADMIN_USERNAME}, password {password} (shown once)"
    if password:
        user.set_password(password)
        user.save(update_fields=["password"])
        return f"user {ADMIN_USERNAME}, password from DJANGO_SUPERUSER_PASSWORD"
    return f"user {ADMIN_USERNAME}, password as printed when it was created"
