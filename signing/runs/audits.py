"""A finished run's audit: asked for when the run completes, fails or is cancelled, and kept
(signing_runaudit) for the run's page.

Who audits depends on where the ask is made. Where this process's messages reach a worker
(a server broker, or embedded mode's in-process broker in `sign` and `serve`, which run
worker threads), `audit_run` goes to one. Elsewhere in embedded mode (`manage.py cancel`, a
command whose in-process broker has no worker) the message would wait unread in this
process, and the run's page would show "Auditing…" until a reaper resent it
SIGNING_AUDIT_RESEND_SECONDS later (600 s by default): so the run is audited here, once the
transaction commits, as a worker would.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction

from kernel.events import EventLogger
from signing.audit.rules import audit
from signing.models import RunAudit, SigningRun
from signing.runs import messages

log = EventLogger(__name__)


def request_audit(run_id: int) -> None:
    """Once this transaction commits, have the finished run audited: by a worker, or here
    when no worker hears this process's messages (the module's docstring says why).

    Robust: the run is finished whatever the broker or the audit says; the caller stamps
    `audit_requested_at`, so a reaper asks again if no audit is recorded in time.
    """
    if messages.reach_workers():
        ask = partial(messages.send, messages.AUDIT_RUN, run_id=run_id)
    else:
        ask = partial(audit_and_record, run_id)
    transaction.on_commit(ask, robust=True)


def audit_and_record(run_id: int) -> RunAudit | None:
    """Audit a finished run and keep the report, for pages that show it (audit_run actor).

    A run that is not finished (or no longer exists) is left alone: the message is stale,
    from before a `seed --reset` restarted the ids, and the run's own audit comes later.
    """
    if not SigningRun.objects.filter(pk=run_id, status__in=SigningRun.FINISHED_STATUSES).exists():
        log.warning("run.audit_skipped", run_id=run_id, reason="not finished")
        return None
    report = audit(run_id=run_id, processes=1)
    recorded, _ = RunAudit.objects.update_or_create(
        run_id=run_id, defaults={"passed": report.passed, "report": report.as_dict()}
    )
    log.info("run.audited", run_id=run_id, passed=report.passed)
    return recorded
