"""Key lifecycle through real workers: mixed algorithms, a disabled key, a rotated KEK, a key
left under an old KEK re-sealed, a key whose KEK is lost retired."""

import json

import pytest

from kernel import crypto
from keyring import sealing
from keyring.models import KeyLease, SigningKey
from keyring.selectors import public_jwks
from records.models import Signature
from signing.models import SigningRun
from signing.runs.services import verify_record
from tests.conftest import seed
from tests.integration.factories import seal_under
from tests.integration.test_pipeline_with_workers import manage

pytestmark = [
    pytest.mark.usefixtures("backend"),
    pytest.mark.workers,
    pytest.mark.django_db(transaction=True),
]


def audit_passes(worker_env: dict[str, str]) -> bool:
    audited = manage(worker_env, "audit", "--json")
    report = json.loads(audited.stdout)
    assert audited.returncode == 0, [c for c in report["checks"] if c["breaches"]]
    return report["passed"]


def test_a_run_with_ed25519_and_p256_keys_passes_the_audit(start_workers, worker_env):
    # Given three Ed25519 and three P-256 keys
    seed(records=600, keys=3)
    seed(records=0, keys=3, algorithm=crypto.ECDSA_P256_SHA256)
    start_workers(processes=2, threads=2)

    # When 600 records are signed in batches of 50
    signed = manage(worker_env, "sign", "--batch-size", "50")

    # Then both kinds of key signed batches, and every signature verifies in the audit
    assert signed.returncode == 0, signed.stderr
    algorithms = set(Signature.objects.values_list("key__algorithm", flat=True).distinct())
    assert algorithms == {crypto.ED25519, crypto.ECDSA_P256_SHA256}
    assert audit_passes(worker_env)


def test_a_disabled_key_signs_no_more_and_its_signatures_still_verify(start_workers, worker_env):
    # Given a first run signed with four keys
    seed(records=200, keys=4)
    start_workers(processes=1, threads=2)
    assert manage(worker_env, "sign", "--batch-size", "25").returncode == 0
    retired = SigningKey.objects.order_by("id").first()
    signed_by_retired = Signature.objects.filter(key=retired).values_list("record_id", flat=True)
    assert signed_by_retired, "the first key signed in the first run"

    # When it is disabled and new records are signed
    assert manage(worker_env, "keys", "disable", retired.kid).returncode == 0
    seed(records=200, keys=0)
    assert manage(worker_env, "sign", "--batch-size", "25").returncode == 0

    # Then it was leased no more, what it signed still verifies, and the audit passes
    retired.refresh_from_db()
    assert not KeyLease.objects.filter(key=retired, acquired_at__gt=retired.disabled_at).exists()
    assert all(verify_record(record_id).valid for record_id in signed_by_retired)
    assert Signature.objects.count() == 400
    assert audit_passes(worker_env)


def test_a_run_after_rotating_the_kek_signs_with_the_new_one(start_workers, worker_env):
    # Given keys sealed under the current KEK, re-sealed under a new one
    seed(records=300, keys=5)
    new_kek = sealing.generate_kek()
    rotated = manage(worker_env | {"SIGNING_NEW_KEK": new_kek}, "keys", "rotate-kek")
    assert rotated.returncode == 0, rotated.stderr
    refused = manage(worker_env, "sign", "--batch-size", "30")  # still the old SIGNING_KEK
    assert refused.returncode != 0
    assert "SIGNING_KEK" in refused.stderr

    # When workers and `sign` run with SIGNING_KEK set to the new KEK
    worker_env["SIGNING_KEK"] = new_kek
    start_workers(processes=1, threads=2)
    signed = manage(worker_env, "sign", "--batch-size", "30")

    # Then the run completes and passes the audit
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert Signature.objects.count() == 300
    assert audit_passes(worker_env)


def test_a_key_left_under_an_old_kek_is_resealed_and_then_signs(start_workers, worker_env):
    # Given five keys, one of them sealed under an old KEK (as an unchecked `keys add` left it)
    *_, left_behind = seed(records=300, keys=5)
    old_kek = sealing.generate_kek()
    seal_under(left_behind, old_kek)
    refused = manage(worker_env, "sign", "--batch-size", "30")
    assert refused.returncode == 1
    assert f"does not open the private key of {left_behind.kid}, though" in refused.stderr
    assert "keys reseal --old-kek-env VAR" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not SigningRun.objects.exists()

    # When it is re-sealed from the variable holding the old KEK, and the records are signed
    resealed = manage(
        worker_env | {"OLD_KEK": old_kek}, "keys", "reseal", "--old-kek-env", "OLD_KEK"
    )
    assert resealed.returncode == 0, resealed.stderr
    assert old_kek not in resealed.stdout + resealed.stderr
    start_workers(processes=1, threads=2)
    signed = manage(worker_env, "sign", "--batch-size", "30")

    # Then that key signed batches like the others, and the audit passes
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert Signature.objects.count() == 300
    assert Signature.objects.filter(key=left_behind).exists()
    assert audit_passes(worker_env)


def test_a_retired_key_is_never_leased_again_and_what_it_signed_still_verifies(
    start_workers, worker_env
):
    # Given a first run signed with four keys
    seed(records=200, keys=4)
    start_workers(processes=1, threads=2)
    assert manage(worker_env, "sign", "--batch-size", "25").returncode == 0
    lost = SigningKey.objects.order_by("id").first()
    signed_by_lost = list(Signature.objects.filter(key=lost).values_list("record_id", flat=True))
    assert signed_by_lost, "the first key signed in the first run"

    # and then new records, and the KEK that one key was sealed under lost: no run can start
    seed(records=200, keys=0)
    seal_under(lost, sealing.generate_kek())
    refused = manage(worker_env, "sign", "--batch-size", "25")
    assert refused.returncode == 1
    assert "keys retire KID" in refused.stderr

    # When it is retired and the new records are signed
    retired = manage(worker_env, "keys", "retire", lost.kid)
    assert retired.returncode == 0, retired.stderr
    signed = manage(worker_env, "sign", "--batch-size", "25")

    # Then it was leased no more, though the same worker process, which opened it in the
    # first run, still holds it in memory; its public key is still published, what it
    # signed still verifies (saying when it was retired), and the audit passes
    assert signed.returncode == 0, signed.stdout + signed.stderr
    lost.refresh_from_db()
    assert lost.retired_at is not None
    assert not KeyLease.objects.filter(key=lost, acquired_at__gt=lost.retired_at).exists()
    assert Signature.objects.count() == 400
    assert lost.kid in {jwk["kid"] for jwk in public_jwks()["keys"]}
    verdicts = [verify_record(record_id) for record_id in signed_by_lost]
    assert all(verdict.valid and verdict.retired_at == lost.retired_at for verdict in verdicts)
    assert audit_passes(worker_env)
