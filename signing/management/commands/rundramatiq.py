"""manage.py rundramatiq, with a worker poll interval that suits short batches.

Dramatiq's Redis consumer backs off up to `dramatiq_worker_timeout` (1 s by default)
when its queue is empty; with one SigningTriggered per completed batch the queue is often
empty for a moment, and a 1 s nap per miss made batch size 10 ten times slower. 100 ms
bounds that wait at a few Redis round trips per second per idle worker.

Workers are the tier that holds the KEK (the web tier need not): one started without it,
or with a malformed one, refuses to start, saying so, rather than fail every batch it takes.
A KEK that is well formed but does not open the keys is found on the first batch, which
goes back at once with the reason (signing.runs.services.sign_batch).
"""

import os

from django.conf import settings
from django.core.management.base import CommandError
from django_dramatiq.management.commands.rundramatiq import Command as DramatiqCommand

from keyring import sealing
from keyring.exceptions import KekError

WORKER_POLL_MS = "100"


class Command(DramatiqCommand):
    def handle(self, *args, **options):
        if settings.SIGNING_EMBEDDED:
            raise CommandError(
                "embedded mode has no worker processes: its broker lives inside `manage.py "
                "sign` and `manage.py serve`, which run the workers as threads. Set "
                "DATABASE_URL and BROKER_URL to run workers apart."
            )
        try:
            sealing.kek_from_environment()
        except KekError as error:
            raise CommandError(f"workers sign, so they need the KEK: {error}") from None
        os.environ.setdefault("dramatiq_worker_timeout", WORKER_POLL_MS)
        os.environ.setdefault("SIGNING_LOG_LEVEL", "INFO")
        return super().handle(*args, **options)
