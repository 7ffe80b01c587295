"""The dashboard: pages for people (the API is for programs). Views call services and
selectors and hand templates plain values; templates hold no queries."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from keyring.models import SigningKey
from keyring.selectors import free_keys, keys_for_display
from records.selectors import record_totals
from signing.models import RunAudit, SigningRun
from signing.runs.dispatch import cancel_run, check_ready_to_sign, start_run
from signing.runs.exceptions import (
    NotReadyToSign,
    RunAlreadyActive,
    RunNotActive,
    RunNotFollowing,
    RunNotFound,
)
from signing.runs.follow import start_follow_run, stop_run
from signing.runs.selectors import (
    active_run,
    follow_activity,
    latest_checkpoint,
    progress_of,
    recent_runs,
)
from signing.web.charts import lease_timeline, throughput
from signing.web.forms import StartRunForm


@login_required
@require_http_methods(["GET", "POST"])
def dashboard(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and not request.user.is_staff:
        raise PermissionDenied("only staff can start runs")
    form = StartRunForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            check_ready_to_sign()
            # The run start_run returns, not active_run(): a run with nothing to sign is
            # completed at once, and is no longer active by the time this page answers.
            start = start_follow_run if form.cleaned_data["follow"] else start_run
            run = start(batch_size=form.cleaned_data["batch_size"])
        except (NotReadyToSign, RunAlreadyActive) as error:
            form.add_error(None, f"{str(error)[0].upper()}{str(error)[1:]}.")
        else:
            messages.success(request, _started(run))
            return redirect("run-detail", run_id=run.pk)
    totals = record_totals()
    context = {
        "form": form,
        "totals": totals,
        "unsigned": totals["records"] - totals["signed"],
        "key_count": SigningKey.objects.count(),
        "free_key_count": free_keys().count(),
        "active": active_run(),
        "runs": recent_runs(),
    }
    status = 400 if request.method == "POST" else 200
    return render(request, "signing/dashboard.html", context, status=status)


def _started(run: SigningRun) -> str:
    """The message the run's page opens with."""
    if run.follow:
        return f"Run {run.pk} started: it signs records as they arrive until you stop it."
    if run.status == SigningRun.Status.COMPLETED and run.batch_count == 0:
        return f"Run {run.pk} had nothing to sign: every record is already signed."
    return f"Run {run.pk} started."


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(SigningRun, pk=run_id)
    return render(
        request,
        "signing/run_detail.html",
        {
            "run": run,
            "progress": progress_of(run),
            "follow": follow_activity(run),
            "audit": _audit_of(run),
            "merkle_root": _merkle_root_of(run),
            "checkpoint": latest_checkpoint(run),
        },
    )


@login_required
@require_GET
def run_progress_json(request: HttpRequest, run_id: int) -> JsonResponse:
    run = get_object_or_404(SigningRun, pk=run_id)
    audit = _audit_of(run)
    activity = follow_activity(run)
    checkpoint = latest_checkpoint(run)
    return JsonResponse(
        {
            **progress_of(run).as_dict(),
            "follow_activity": None if activity is None else activity.as_dict(),
            "audit": None if audit is None else {"passed": audit.passed, **audit.report},
            "merkle_root": _merkle_root_of(run),
            "latest_checkpoint": None if checkpoint is None else checkpoint.as_dict(),
        }
    )


@login_required
@require_GET
def run_charts(request: HttpRequest, run_id: int) -> HttpResponse:
    """The charts partial. Every open run page asks for it every 3 s and it reads all the
    run's leases and batches (in two GROUP BYs), so it is cached per run for
    SIGNING_CHARTS_CACHE_SECONDS: any number of viewers cost one drawing per interval per
    process. It shows no user-specific content, so one copy serves every viewer; the key
    names the run's status, so a run that just finished is drawn afresh, whole."""
    run = get_object_or_404(SigningRun, pk=run_id)
    key = f"signing.web.charts.{run.pk}.{run.status}"
    html = cache.get(key)
    if html is None:
        html = render_to_string(
            "signing/_charts.html",
            {"timeline": lease_timeline(run), "throughput": throughput(run), "run_id": run.pk},
        )
        if settings.SIGNING_CHARTS_CACHE_SECONDS:
            cache.set(key, html, timeout=settings.SIGNING_CHARTS_CACHE_SECONDS)
    return HttpResponse(html)


@login_required
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("only staff can cancel runs")
    if cancel_run(run_id):
        messages.success(request, f"Run {run_id} cancelled.")
    else:
        messages.error(request, f"Run {run_id} is not active.")
    return redirect("run-detail", run_id=run_id)


@login_required
@require_POST
def run_stop(request: HttpRequest, run_id: int) -> HttpResponse:
    """A follow run's graceful stop: sign what has arrived, then complete."""
    if not request.user.is_staff:
        raise PermissionDenied("only staff can stop runs")
    try:
        run = stop_run(run_id)
    except RunNotFound:
        raise Http404(f"no run has id {run_id}") from None
    except (RunNotFollowing, RunNotActive) as error:
        messages.error(request, f"{str(error)[0].upper()}{str(error)[1:]}.")
    else:
        messages.success(
            request,
            f"Run {run_id} is stopping: what has arrived is being signed."
            if run.is_active
            else f"Run {run_id} stopped: everything that arrived is signed.",
        )
    return redirect("run-detail", run_id=run_id)


@login_required
@require_GET
def keys(request: HttpRequest) -> HttpResponse:
    return render(request, "signing/keys.html", {"keys": keys_for_display()})


@login_required
@require_GET
def key_public_pem(request: HttpRequest, kid: str) -> HttpResponse:
    key = get_object_or_404(SigningKey.objects.only("kid", "public_key_pem"), kid=kid)
    response = HttpResponse(key.public_key_pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{key.kid}.pem"'
    return response


def _audit_of(run: SigningRun) -> RunAudit | None:
    return RunAudit.objects.filter(run=run).first()


def _merkle_root_of(run: SigningRun) -> str | None:
    """The run's Merkle root in hex, as the API shows it; None until the run completes."""
    return None if run.merkle_root is None else bytes(run.merkle_root).hex()
