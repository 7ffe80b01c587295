#!/usr/bin/env python
"""Django's command-line utility for the signing service."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signing_site.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    # Every command says on stderr when it runs embedded, and why (call_command does not):
    # here, not in each command, so Django's own commands say it too.
    announcement = settings.SIGNING_BACKENDS.announcement()
    if announcement:
        print(announcement, file=sys.stderr)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
