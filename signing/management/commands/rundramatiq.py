"""manage.py rundramatiq: django_dramatiq's command, with a worker poll interval that suits
short batches, a shutdown bound that suits a deploy, and every line in the log format.

Dramatiq's Redis consumer backs off up to `dramatiq_worker_timeout` (1 s by default)
when its queue is empty; with one SigningTriggered per completed batch the queue is often
empty for a moment, and a 1 s nap per miss made batch size 10 ten times slower. 100 ms
bounds that wait at a few Redis round trips per second per idle worker.

On SIGTERM each worker thread may finish the message it holds for up to
--worker-shutdown-timeout: 25 s here instead of Dramatiq's 10 minutes, so a stop fits
the 30 s that docker-compose (stop_grace_period) and Kubernetes (its default grace period)
wait before SIGKILL, and a batch in flight has time to be stored (one of 1,000 records
takes well under a second, one of 100,000 a few seconds: docs/benchmarks.md). A batch
still signing when it runs out is stored whole or not at all; its lease expires and the
batch goes back (docs/reliability.md).

It runs Dramatiq through signing.ops.dramatiq_cli, not the `dramatiq` script, so that
Dramatiq's master process writes its lines in SIGNING_LOG_FORMAT like every other process.

Workers are the tier that holds the KEK (the web tier need not): one started without it,
or with a malformed one, refuses to start, saying so, rather than fail every batch it takes.
A KEK that is well formed but does not open the keys is found on the first batch, which
goes back at once with the reason (signing.runs.services.sign_batch).
"""

import io
import os
import sys

from django.conf import settings
from django.core.management.base import CommandError, OutputWrapper
from django_dramatiq.management.commands.rundramatiq import Command as DramatiqCommand

from keyring import sealing
from keyring.exceptions import KekError
from signing.ops.dramatiq_cli import MODULE as DRAMATIQ_CLI

WORKER_POLL_MS = "100"
WORKER_SHUTDOWN_TIMEOUT_MS = 25_000


class Command(DramatiqCommand):
    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(worker_shutdown_timeout=WORKER_SHUTDOWN_TIMEOUT_MS)

    def handle(self, *args, **options):
        if settings.SIGNING_EMBEDDED:
            raise CommandError(
                f"embedded mode ({settings.SIGNING_BACKENDS.reason}) has no separate workers: "
                "signing runs inside `manage.py sign` (and `serve`), as threads of that process"
            )
        if options["use_gevent"]:
            raise CommandError("--use-gevent is not supported: the workers use threads")
        try:
            sealing.kek_from_environment()
        except KekError as error:
            raise CommandError(f"workers sign, so they need the KEK: {error}") from None
        os.environ.setdefault("dramatiq_worker_timeout", WORKER_POLL_MS)
        os.environ.setdefault("SIGNING_LOG_LEVEL", "INFO")
        os.environ["SIGNING_LOG_FORMAT"] = settings.SIGNING_LOG_FORMAT
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")])
        )
        # django_dramatiq prints each module it finds on stdout; the master logs them once,
        # in the log format (workers.starting), instead.
        self.stdout = OutputWrapper(io.StringIO())
        arguments = dramatiq_arguments(modules=self.discover_tasks_modules(), **options)
        os.execv(sys.executable, [sys.executable, "-m", DRAMATIQ_CLI, *arguments])


def dramatiq_arguments(
    *,
    modules: list[str],
    path: list[str] | str,
    processes: int,
    threads: int,
    worker_shutdown_timeout: int,
    watch_dir: str | None,
    use_polling_watcher: bool,
    forks: list[str],
    verbosity: int,
    queues: list[str] | None,
    pid_file: str | None,
    log_file: str | None,
    use_spawn: bool,
    **_ignored: object,
) -> list[str]:
    """The `dramatiq` arguments django_dramatiq's command would pass for these options."""
    arguments = [
        *("--path", *([path] if isinstance(path, str) else path)),
        *("--processes", str(processes), "--threads", str(threads)),
        *("--worker-shutdown-timeout", str(worker_shutdown_timeout)),
    ]
    if watch_dir:
        arguments += ["--watch", watch_dir]
        arguments += ["--watch-use-polling"] if use_polling_watcher else []
    for function in forks:
        arguments += ["--fork-function", function]
    arguments += ["-v"] * (verbosity - 1)
    arguments += modules
    if queues:
        arguments += ["--queues", *queues]
    if pid_file:
        arguments += ["--pid-file", pid_file]
    if log_file:
        arguments += ["--log-file", log_file]
    if use_spawn:
        arguments.append("--use-spawn")
    return arguments
