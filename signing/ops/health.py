"""/healthz: can this process reach the database and the broker right now?

For load balancers, orchestrators and compose healthchecks: no login, answers in well under
a second, 200 when both answer and 503 naming the one that does not. The reason given is
the error's type only; the details (hosts, ports) go to the log.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from kernel.connectivity import check_broker, check_database
from kernel.events import EventLogger

log = EventLogger(__name__)


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "broker": check_broker}


def health() -> dict[str, str]:
    """ "ok" or the error's type, for each dependency."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as error:  # any failure means unhealthy; the log has the detail
            log.warning("health.failed", check=name, error=error)
            results[name] = type(error).__name__
        else:
            results[name] = "ok"
    return results


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    results = health()
    healthy = all(result == "ok" for result in results.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unhealthy", **results}, status=200 if healthy else 503
    )
