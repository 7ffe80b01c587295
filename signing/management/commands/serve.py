"""manage.py serve: the web app and 2 worker processes (in embedded mode, worker threads of
the web server's process), started and stopped together.

A broker that does not answer is refused before anything starts, in one line, as `sign` and
`demo` refuse it: serve's workers could consume nothing, no run started from its dashboard or
API could move, and a warning would scroll away under the web server's log. The dashboard
alone, with no workers, is Django's `manage.py runserver`. (A deployment serves with
gunicorn, where /healthz reports the broker instead: a broker outage must not stop the web.)
"""

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from kernel.cli import whole_number
from kernel.safety import refuse_unsafe_serving
from signing.ops.workers import interrupt_on_termination, workers_for_this_mode
from signing.runs.dispatch import check_broker_reachable
from signing.runs.exceptions import NotReadyToSign


class Command(BaseCommand):
    help = "Serve the dashboard and run 2 worker processes; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "addrport",
            nargs="?",
            default="127.0.0.1:8000",
            help="ADDR:PORT or PORT to serve on, as runserver takes it (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--processes",
            type=whole_number(1),
            default=2,
            help="worker processes (ignored in embedded mode, whose workers are threads)",
        )
        parser.add_argument(
            "--threads",
            type=whole_number(1),
            default=4,
            help="threads per worker process (embedded: the worker threads)",
        )

    def handle(self, *args, addrport: str, processes: int, threads: int, **options) -> None:
        try:
            refuse_unsafe_serving(address=addrport)  # before any worker starts
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        try:
            check_broker_reachable()
        except NotReadyToSign as error:
            raise CommandError(str(error)) from None
        log_file = Path(settings.BASE_DIR) / ".demo" / "workers.log"
        log_file.parent.mkdir(exist_ok=True)
        workers = workers_for_this_mode(processes=processes, threads=threads, log_file=log_file)
        self.stdout.write(f"starting {workers.describe()}")
        interrupt_on_termination()
        with workers:
            try:
                # runserver serves the static files itself (--insecure) so that the project
                # runs with DEBUG off and no other server; put a real one in front in production.
                call_command("runserver", addrport, use_reloader=False, insecure_serving=True)
            except KeyboardInterrupt:
                pass
            finally:
                self.stdout.write("stopping the workers")
