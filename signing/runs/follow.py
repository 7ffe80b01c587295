"""Follow runs: a run that stays active and signs records as they arrive.

A follow run is an ordinary run whose batches are cut as records come in, instead of all at
its start. A cut turns the records waiting (unsigned, after the run's `followed_through`)
into pending batches of the run's batch size, and the existing claim, lease, dispatch and
completion path (signing.runs.dispatch) signs them, with the same rules and recovery.

When a cut happens (`cut_if_due`):
- `batch_size` records are waiting: every full batch is cut at once;
- the oldest waiting record has waited SIGNING_FOLLOW_MAX_WAIT_MS: what is left (fewer than
  a batch) is cut as one smaller batch;
- a graceful stop (`stop_run`): everything that has arrived is cut, and nothing after.
Each batch records how many were waiting when it was cut (`Batch.waiting`), so the audit
checks size = min(waiting, batch size).

Who asks: `records_arrived()` after records are committed (the ingest path), and the
workers' follow tick (signing.runs.reaper.FollowTickMiddleware) for the max wait, so a run
started through the API, with no command process, follows all the same.

Why a cut never loses a record: record ids come from a sequence, and inserting transactions
commit out of order (id 100 may commit after 101). A cut first takes the backend's
`lock_record_inserts` (PostgreSQL: records_record in SHARE mode, which waits for every
INSERT in flight to end and holds new ones off until the cut commits; SQLite: the one write
lock). Under it every id up to the highest visible is committed or never will be, and any
later insert gets a higher id (the sequence only grows), so no record can appear later
inside a range cut here. docs/architecture.md, "Follow runs", says more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, QuerySet, Sum
from django.utils import timezone

from kernel.events import EventLogger
from keyring.models import KeyLease
from records.models import Record, Signature
from signing.backends import backend
from signing.models import Batch, SigningRun
from signing.runs import messages
from signing.runs.dispatch import advance_run, create_run, dispatch_batches
from signing.runs.exceptions import RunNotActive, RunNotFollowing, RunNotFound

log = EventLogger(__name__)

# The largest id a bigint holds: a larger one names no run (and must not reach PostgreSQL).
MAX_ID = 2**63 - 1

# Cut the waiting records after %(after)s up to %(through)s into batches of %(batch_size)s
# (the last may be smaller: the caller decides it may), numbered on from %(last_seq)s. Each
# batch records how many records were waiting from its first one on: %(waiting)s at the
# first batch, a batch size fewer at each next. One statement, the same on PostgreSQL and
# SQLite (PLAN_BATCHES' grouping, over the waiting records only).
CUT_BATCHES = """
INSERT INTO signing_batch
    (run_id, seq, first_record_id, last_record_id, size, status, attempts, last_error,
     created_at, waiting)
SELECT %(run_id)s, %(last_seq)s + grp + 1, MIN(id), MAX(id), COUNT(*), 'pending', 0, '',
       %(now)s, %(waiting)s - grp * %(batch_size)s
FROM (
    SELECT r.id, (ROW_NUMBER() OVER (ORDER BY r.id) - 1) / %(batch_size)s AS grp
    FROM records_record r
    WHERE r.id > %(after)s AND r.id <= %(through)s
      AND NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
) numbered
GROUP BY grp
ORDER BY grp
"""


@dataclass(frozen=True, slots=True)
class Cut:
    """What one cut did: batches and records cut, records still waiting after it."""

    batches: int = 0
    records: int = 0
    left_waiting: int = 0


def max_wait() -> timedelta:
    return timedelta(milliseconds=settings.SIGNING_FOLLOW_MAX_WAIT_MS)


def following_runs() -> QuerySet[SigningRun]:
    """Follow runs still taking records in (at most one: one run is active at a time)."""
    return SigningRun.objects.filter(
        follow=True, status=SigningRun.Status.RUNNING, stop_requested_at=None
    )


def _waiting(after: int) -> QuerySet[Record]:
    """The records a follow run has not cut yet: unsigned, after its `followed_through`."""
    signed = Signature.objects.filter(record_id=OuterRef("pk"))
    return Record.objects.filter(id__gt=after).exclude(Exists(signed))


def cut_batches(run_id: int, *, final: bool = False) -> Cut:
    """Cut what is due of a following run's waiting records into pending batches; send
    nothing (the caller dispatches after the commit).

    Full batches are cut whenever enough records wait; the rest only once its oldest record
    has waited the max wait, or when `final` (a graceful stop: the run then takes nothing
    more in). A run that is not following (cancelled, stopping, finished) is left alone.
    One short transaction: the record-insert lock (the module's docstring says why), then
    the run's row (so two cuts of one run take turns), then one INSERT of the batches.
    """
    with transaction.atomic():
        backend().lock_record_inserts()
        run = following_runs().select_for_update().filter(pk=run_id).first()
        if run is None:
            return Cut()
        now = timezone.now()
        waiting = _waiting(run.followed_through).order_by("id")
        count = waiting.count()
        full = count - count % run.batch_size
        first_left = waiting.values_list("id", "created_at")[full : full + 1].first()
        to_cut = full
        if first_left is not None and (final or first_left[1] <= now - max_wait()):
            to_cut, first_left = count, None
        cut = Cut()
        if to_cut:
            last_cut = waiting.values_list("id", flat=True)[to_cut - 1 : to_cut].get()
            cut = _insert_batches(run, through=last_cut, waiting=count, now=now)
        # Every record up to `followed_through` is now signed or in a batch of the run: up
        # to the first one left waiting, or, with none left, the last committed one.
        if first_left is not None:
            through = first_left[0] - 1
        else:
            through = Record.objects.aggregate(last=Max("id"))["last"] or 0
        SigningRun.objects.filter(pk=run.pk).update(
            followed_through=max(through, run.followed_through),
            batch_count=F("batch_count") + cut.batches,
            record_count=F("record_count") + cut.records,
            **({"stop_requested_at": now} if final else {}),
        )
    cut = Cut(cut.batches, cut.records, left_waiting=count - cut.records)
    if cut.batches:
        log.info(
            "run.cut",
            run_id=run_id,
            batches=cut.batches,
            records=cut.records,
            left_waiting=cut.left_waiting,
            final=final,
        )
    return cut


def _insert_batches(run: SigningRun, *, through: int, waiting: int, now: datetime) -> Cut:
    last_seq = run.batches.aggregate(last=Max("seq"))["last"] or 0
    params = {
        "run_id": run.pk,
        "after": run.followed_through,
        "through": through,
        "batch_size": run.batch_size,
        "last_seq": last_seq,
        "waiting": waiting,
        "now": connection.ops.adapt_datetimefield_value(now),
    }
    with connection.cursor() as cursor:
        cursor.execute(CUT_BATCHES, params)
    cut = run.batches.filter(seq__gt=last_seq).aggregate(
        batches=Max("seq"), records=Sum("size", default=0)
    )
    return Cut(batches=(cut["batches"] or last_seq) - last_seq, records=cut["records"] or 0)


def is_due(run: SigningRun, *, now: datetime | None = None) -> bool:
    """Whether a cut would cut something now: a full batch waits, or the oldest waiting
    record has waited the max wait. Two index probes, no lock: the cut decides again under
    its lock, so a wrong answer here costs one empty cut or one tick's delay."""
    after = Record.objects.filter(id__gt=run.followed_through).order_by("id")
    if after[run.batch_size - 1 : run.batch_size].exists():
        return True
    oldest = after.values_list("created_at", flat=True).first()
    return oldest is not None and oldest <= (now or timezone.now()) - max_wait()


@dataclass(frozen=True, slots=True)
class Check:
    """What one look for due cuts found: follow runs running (following or stopping),
    batches cut."""

    following: int = 0
    batches: int = 0


def cut_if_due(*, unstick: bool = False) -> Check:
    """Cut and dispatch what is due in the following run, if any.

    Safe to call from any number of processes at once: cuts of one run take turns on its
    row, and each decides again under the lock what is due. From a process whose messages
    reach no worker (embedded mode, a command other than `sign` or `serve`) it only cuts:
    the workers' tick dispatches. `unstick` (the tick) also moves a follow run whose
    pending batches have no lease in flight, whose completion would dispatch them, and
    completes a stopped one with nothing left.
    """
    following = batches = 0
    dispatch = messages.reach_workers()
    for run in SigningRun.objects.filter(follow=True, status=SigningRun.Status.RUNNING):
        following += 1  # stopping ones too: the tick keeps its pace until they complete
        if run.is_following and is_due(run):
            cut = cut_batches(run.pk).batches
            if cut and dispatch:
                dispatch_batches(run.pk)
            batches += cut
        if unstick and dispatch and _stuck(run):
            advance_run(run.pk)
    return Check(following=following, batches=batches)


def _stuck(run: SigningRun) -> bool:
    """Pending batches with none of the run's leases open (no completion will come to
    dispatch them), or a stopped run with nothing left to sign (none to complete it)."""
    batches = Batch.objects.filter(run_id=run.pk)
    in_flight = KeyLease.objects.filter(batch__run_id=run.pk, released_at=None).exists()
    if in_flight:
        return False
    if run.stop_requested_at is not None:
        return True
    return batches.filter(status=Batch.Status.PENDING).exists()


def start_follow_run(*, batch_size: int, max_in_flight: int | None = None) -> SigningRun:
    """Start a follow run: cut what is waiting now (every full batch, and the rest if its
    oldest record has waited the max wait, as records from before the start have), then
    dispatch once that commits. The run stays running, even with nothing to sign, until a
    graceful stop or a cancel. RunAlreadyActive while another run is active."""
    with transaction.atomic():
        run = create_run(batch_size=batch_size, max_in_flight=max_in_flight, follow=True)
        cut = cut_batches(run.pk)
        if cut.batches and messages.reach_workers():
            transaction.on_commit(partial(dispatch_batches, run.pk))
    log.info("run.following", run_id=run.pk, batch_size=run.batch_size, batches=cut.batches)
    run.refresh_from_db()
    return run


def records_arrived() -> None:
    """Tell the following run, if any, that records were committed: it cuts a batch now if
    one is due. For the ingest path (the API, `manage.py ingest`), once its records are
    committed: cheap when nothing is due (a query for the run, two index probes), safe to
    call concurrently, never raises (a failure is logged), and never needed for
    correctness (the workers' follow tick cuts whatever is due within a fraction of the max
    wait). Inside a transaction it waits for that transaction's commit, and does nothing if
    it rolls back.
    """
    if connection.in_atomic_block:
        transaction.on_commit(records_arrived)
        return
    try:
        cut_if_due()
    except Exception:  # the records are stored: the tick cuts them; the caller must not fail
        log.warning("follow.arrival_failed", exc_info=True)


def stop_run(run_id: int) -> SigningRun:
    """Stop a follow run gracefully: cut everything that has arrived, sign it, complete.

    Records committed before the stop are cut (the cut waits for inserts in flight), none
    after; the run completes once its batches are signed (at once if none is left). Asking
    again while it is stopping changes nothing. Raises RunNotFound, RunNotFollowing (not a
    follow run), or RunNotActive (finished already).
    """
    run = SigningRun.objects.filter(pk=run_id).first() if 0 < run_id <= MAX_ID else None
    if run is None:
        raise RunNotFound(run_id)
    if not run.follow:
        raise RunNotFollowing(run_id)
    if not run.is_active:
        raise RunNotActive(run_id, run.status)
    if run.stop_requested_at is None:
        cut_batches(run_id, final=True)
    if messages.reach_workers():  # else the workers' tick does, within a tick
        advance_run(run_id)  # dispatch what was cut, or complete the run if nothing is left
    run.refresh_from_db()
    log.info("run.stop_requested", run_id=run_id, status=run.status)
    return run
