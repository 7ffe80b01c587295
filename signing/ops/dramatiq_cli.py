"""Dramatiq's command line, writing its lines in the service's log format: what
`manage.py rundramatiq` runs (`python -m signing.ops.dramatiq_cli DRAMATIQ-ARGUMENTS`).

Run as plain `dramatiq`, the master process (it forks the worker processes, forwards
signals and copies their output to stderr) never loads Django, so settings' LOGGING never
reaches it: its own lines ("is booting up", "Sending signal 'SIGTERM'") stay Dramatiq's
plain text, among JSON lines with SIGNING_LOG_FORMAT=json. Here the master configures
logging as settings do (kernel.events.logging_config) before Dramatiq's main runs, with
--skip-logging so that neither it nor a worker process calls logging.basicConfig: a worker
writes through the handler settings give it once django_dramatiq.setup has loaded Django
(its stderr is by then Dramatiq's pipe to the master, so its lines stay whole).

Free of Django: it runs before any settings. rundramatiq passes the format and level it
read from settings in the environment, and puts the project on PYTHONPATH.
"""

from __future__ import annotations

import logging.config
import os
import sys

from dramatiq import cli

from kernel.events import LOG_FORMATS, LOG_LEVELS, EventLogger, logging_config

MODULE = "signing.ops.dramatiq_cli"

log = EventLogger(MODULE)


def main(argv: list[str]) -> int:
    """Configure logging, then run Dramatiq's main on `argv` (its own arguments)."""
    log_format = os.environ.get("SIGNING_LOG_FORMAT", "").strip().lower()
    level = os.environ.get("SIGNING_LOG_LEVEL", "").strip().upper()
    logging.config.dictConfig(
        logging_config(
            log_format=log_format if log_format in LOG_FORMATS else "text",
            level=level if level in LOG_LEVELS else "INFO",
            dramatiq_level="INFO",
        )
    )
    args = cli.make_argument_parser().parse_args(argv)
    args.skip_logging = True
    log.info(
        "workers.starting",
        processes=args.processes,
        threads=args.threads,
        shutdown_timeout_ms=args.worker_shutdown_timeout,
        modules=",".join(args.modules),
    )
    # A SIGHUP makes Dramatiq exec sys.argv again (a reload): this module, not `dramatiq`.
    sys.argv = [sys.executable, "-m", MODULE, *argv]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
