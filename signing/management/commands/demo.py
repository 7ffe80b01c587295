"""manage.py demo: seed, start workers, sign everything, audit, stop, summarize."""

from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from records.selectors import record_totals
from signing.cli import whole_number
from signing.models import SigningRun
from signing.selectors import run_progress
from signing.workers import WorkerPool


class Command(BaseCommand):
    help = "Seed, sign every record with 2 worker processes, audit, and print a summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--records", type=whole_number(1), default=100_000)
        parser.add_argument("--keys", type=whole_number(1), default=100)
        parser.add_argument(
            "--batch-size", type=whole_number(1), default=settings.SIGNING_BATCH_SIZE
        )
        parser.add_argument("--processes", type=whole_number(1), default=2)
        parser.add_argument("--threads", type=whole_number(1), default=4)

    def handle(self, *args, **options) -> None:
        call_command("seed", records=options["records"], keys=options["keys"], reset=True)
        log_file = Path(settings.BASE_DIR) / ".demo" / "workers.log"
        log_file.parent.mkdir(exist_ok=True)
        self.stdout.write(f"starting {options['processes']} worker processes (log: {log_file})")
        with WorkerPool(
            processes=options["processes"], threads=options["threads"], log_file=log_file
        ):
            call_command("sign", batch_size=str(options["batch_size"]))
        self.stdout.write("workers stopped")
        try:
            call_command("audit")
            audit_passed = True
        except SystemExit:
            audit_passed = False
        self.print_summary(audit_passed)
        if not audit_passed:
            raise CommandError("the audit found breaches (listed above)")

    def print_summary(self, audit_passed: bool) -> None:
        run = SigningRun.objects.order_by("-id").first()
        progress = run_progress(run.pk)
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
