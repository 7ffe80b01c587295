"""manage.py merkle_cost: the figures of docs/benchmarks.md's issue 18 section, made small."""

import io
import re

import pytest
from django.core.management import call_command

from signing.audit.rules import audit
from signing.models import SigningRun

SHARE = re.compile(r"root = (\d+\.\d+)%")


def test_the_root_is_timed_against_signing_the_batch():
    out = io.StringIO()
    call_command("merkle_cost", "--batch-size", "20", "--repeat", "3", stdout=out)
    assert "ed25519, root / signing, batch 20, median of 3" in out.getvalue()
    assert float(SHARE.search(out.getvalue())[1]) > 0


@pytest.mark.django_db
def test_the_hot_path_signs_a_run_batch_by_batch_and_leaves_it_audited_clean():
    out = io.StringIO()
    call_command(
        "merkle_cost", "--hot-path", "--reset", "--batch-size", "10", "--repeat", "3", stdout=out
    )
    assert "sign_batch), batch 10, median of 2" in out.getvalue()
    run = SigningRun.objects.get()
    assert run.status == SigningRun.Status.COMPLETED
    assert run.merkle_root is not None
    assert audit(processes=1).passed
