#!/usr/bin/env python
"""Django's command-line utility for the signing service."""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from kernel import backends

PROJECT_SETTINGS = "signing_site.settings"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", PROJECT_SETTINGS)
    # Settings never open a connection: when nothing decides between the servers and
    # embedded mode, every command probes here, before settings are read, and records the
    # answer where they read it (kernel.backends). Other settings (the tests') configure it.
    decided = None
    if os.environ["DJANGO_SETTINGS_MODULE"] == PROJECT_SETTINGS:
        decided = backends.decide_once(
            os.environ,
            base_dir=Path(__file__).resolve().parent,
            by=" ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]),
            now=datetime.now(UTC),
        )
    from django.conf import settings
    from django.core.management import execute_from_command_line

    # Every command says on stderr when it runs embedded, and why (call_command does not):
    # here, not in each command, so Django's own commands say it too.
    announcement = (decided or settings.SIGNING_BACKENDS).announcement()
    if announcement:
        print(announcement, file=sys.stderr)
    try:
        execute_from_command_line(sys.argv)
    except BrokenPipeError:  # `manage.py keys export-public | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(1)
    except Exception as error:  # a database not there or not migrated: one line, as bad input is
        from kernel.cli import database_problem

        message = None if "--traceback" in sys.argv else database_problem(error)
        if message is None:
            raise
        sys.exit(message)


if __name__ == "__main__":
    main()
