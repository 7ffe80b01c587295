"""manage.py demo: seed, start workers, sign everything, audit, stop, summarize.

The demo starts from nothing, so it deletes what the database holds: only with --reset, or
a "yes" typed at a terminal. `make demo` gives --reset, on a database of the demo's own
(signing_demo), never the one real work is done in.
"""

import os
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from kernel import backends
from kernel.cli import amount, refuse_an_unmigrated_database, whole_number
from kernel.roles import ResetNeedsOwner, connect_as_owner
from records.models import Record
from records.selectors import record_totals
from signing.management.cli import confirm_reset, kek_once_the_broker_answers
from signing.models import SigningRun
from signing.ops.workers import interrupt_on_termination, workers_for_this_mode
from signing.runs.exceptions import RunAlreadyActive
from signing.runs.seeding import seed_database
from signing.runs.selectors import progress_of


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
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete the records, signatures, runs and keys the database holds (needed "
            "when it holds any, unless you answer yes at a terminal)",
        )

    def handle(self, *args, **options) -> None:
        connect_as_owner()  # it resets, which is the owner's; its workers are DATABASE_URL's
        refuse_an_unmigrated_database()
        kek = kek_once_the_broker_answers()  # before the reset: a demo that cannot run keeps all
        held = confirm_reset(self, reset=options["reset"], verb="the demo")
        login = ensure_admin_user()
        started = time.perf_counter()
        try:
            seeded = seed_database(
                records=options["records"],
                keys=options["keys"],
                kek=kek,
                reset=True,
            )
        except (RunAlreadyActive, ResetNeedsOwner) as error:
            raise CommandError(str(error)) from None
        if not held.empty:
            self.stdout.write(f"deleted {held}")
        self.stdout.write(
            f"seeded {amount(seeded.records, 'records')} and {amount(seeded.keys, 'keys')} in "
            f"{time.perf_counter() - started:.2f} s"
        )
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
        self.stdout.write(
            f"  dashboard      {serve_this_demo()}, then http://127.0.0.1:8000/ ({login})"
        )
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
            f"  verify one     {_reopening().prefix()}{_in_this_database()}"
            ".venv/bin/python manage.py export_signature "
            f"{Record.objects.order_by('id').values_list('id', flat=True).first()} "
            "--out /tmp/sig (prints an openssl command)",
        ]
        self.stdout.write("\n".join(lines))


# The database `make demo` and `make serve` use (the Makefile's DEMO_DATABASE).
MAKE_DEMO_DATABASE = "signing_demo"


def serve_this_demo() -> str:
    """The command that serves the data this demo signed, from a fresh shell.

    `make serve` serves the demo's own database (DEMO_DATABASE), in the mode and with the
    env file a fresh process reads; whatever this demo was given on its command line that
    changes those (`SIGNING_EMBEDDED=1 make demo`, SIGNING_EMBEDDED_DB, DATABASE_URL, …) goes
    before it, or without it `make serve` opens another database, with another admin
    password. A demo on DATABASE_URL's own database (no SIGNING_DATABASE_NAME) is served by
    `manage.py serve`, since `make serve` would open signing_demo.
    """
    reopening = _reopening()
    name = os.environ.get("SIGNING_DATABASE_NAME", "").strip()
    if not name:
        command = ".venv/bin/python manage.py serve"
    elif name == MAKE_DEMO_DATABASE:
        command = "make serve"
    else:
        command = f"make serve DEMO_DATABASE={name}"
    return f"{reopening.prefix()}{command}{reopening.caveat()}"


def _reopening() -> backends.Reopening:
    """What this process was given itself (not read from the env file) that a later command
    needs to open the same data."""
    given = {name: os.environ[name] for name in settings.SIGNING_NAMES_GIVEN if name in os.environ}
    return backends.to_reopen(given, base_dir=Path(settings.BASE_DIR))


def _in_this_database() -> str:
    """What to put before a command so that it reads the database the demo signed."""
    name = os.environ.get("SIGNING_DATABASE_NAME")
    return f"SIGNING_DATABASE_NAME={name} " if name else ""


ADMIN_USERNAME = "admin"


def ensure_admin_user() -> str:
    """Make sure the dashboard has a user to log in with; say how to log in.

    The password is DJANGO_SUPERUSER_PASSWORD when set (it must pass the password
    validators), otherwise a random one (16 random URL-safe characters: it passes them),
    printed once, when the user is first created; later demos leave it alone.
    """
    User = get_user_model()
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    user = User.objects.filter(username=ADMIN_USERNAME).first()
    if password:
        try:  # the validators the password change page applies (AUTH_PASSWORD_VALIDATORS)
            validate_password(password, user or User(username=ADMIN_USERNAME))
        except ValidationError as error:
            raise CommandError(
                "DJANGO_SUPERUSER_PASSWORD is too weak: " + " ".join(error.messages)
            ) from None
    if user is None:
        password = password or secrets.token_urlsafe(12)
        User.objects.create_superuser(ADMIN_USERNAME, password=password)
        return f"user {ADMIN_USERNAME}, password {password} (shown once)"
    if password:
        user.set_password(password)
        user.save(update_fields=["password"])
        return f"user {ADMIN_USERNAME}, password from DJANGO_SUPERUSER_PASSWORD"
    return f"user {ADMIN_USERNAME}, password as printed when it was created"
