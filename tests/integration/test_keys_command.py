"""manage.py keys: add, disable, enable, export-public, rotate-kek, against the real database."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from kernel import crypto
from keyring import sealing
from keyring.exceptions import KekMismatch
from keyring.models import KeyLease, SigningKey
from keyring.services import keyring_clock
from signing.backends import backend
from signing.runs.dispatch import plan_run
from tests.conftest import seed

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


def keys(*args: str) -> str:
    out = io.StringIO()
    call_command("keys", *args, stdout=out)
    return out.getvalue()


def opens(kek: bytes, key: SigningKey) -> bool:
    try:
        sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
    except KekMismatch:
        return False
    return True


def test_add_generates_sealed_keys_of_the_algorithm_asked():
    output = keys("add", "--count", "2", "--algorithm", crypto.ECDSA_P256_SHA256)

    added = list(SigningKey.objects.order_by("id"))
    assert [key.algorithm for key in added] == [crypto.ECDSA_P256_SHA256] * 2
    assert all(f"added {key.kid} ({crypto.ECDSA_P256_SHA256})" in output for key in added)
    assert all(opens(sealing.kek_from_environment(), key) for key in added)


def test_add_stamps_the_new_keys_with_one_time_read_from_the_keyring_clock():
    before = keyring_clock()
    keys("add", "--count", "3")
    after = keyring_clock()
    [created_at] = set(SigningKey.objects.values_list("created_at", flat=True))
    assert before < created_at < after


def test_add_refuses_a_count_below_one_and_an_unknown_algorithm():
    with pytest.raises(CommandError, match="whole number"):
        keys("add", "--count", "0")
    with pytest.raises(CommandError, match="invalid choice"):
        keys("add", "--algorithm", "rsa")
    assert not SigningKey.objects.exists()


def test_add_without_a_kek_says_how_to_set_one(monkeypatch):
    monkeypatch.delenv("SIGNING_KEK")
    with pytest.raises(CommandError, match="SIGNING_KEK is not set"):
        keys("add")


def test_add_refuses_a_kek_that_does_not_open_the_keys_already_there(monkeypatch):
    first, _ = seed(records=0, keys=2)
    other_kek = sealing.generate_kek()
    monkeypatch.setenv("SIGNING_KEK", other_kek)

    refused = f"does not open the private key of {first.kid}:"
    with pytest.raises(CommandError, match=refused) as error:
        keys("add", "--count", "3")

    assert error.value.returncode == 1
    assert "\n" not in str(error.value)
    assert other_kek not in str(error.value)
    assert SigningKey.objects.count() == 2


def test_a_disabled_key_is_never_leased_again():
    first, second = seed(records=30, keys=2)
    run = plan_run(batch_size=10)
    batches = list(run.batches.order_by("seq"))

    output = keys("disable", first.kid)

    first.refresh_from_db()
    assert not first.enabled
    assert first.disabled_at is not None
    assert f"{first.kid} is disabled" in output
    assert backend().lease_lru_key(batch_id=batches[0].pk, ttl_seconds=30).key_id == second.pk
    # first was the least recently used and is free, yet nothing is left to lease
    assert backend().lease_lru_key(batch_id=batches[1].pk, ttl_seconds=30) is None
    assert not KeyLease.objects.filter(key=first).exists()


def test_disabling_twice_keeps_the_first_time_and_an_unknown_kid_is_an_error():
    [key] = seed(records=0, keys=1)
    keys("disable", key.kid)
    key.refresh_from_db()
    keys("disable", key.kid)
    assert SigningKey.objects.get(pk=key.pk).disabled_at == key.disabled_at
    with pytest.raises(CommandError, match="no key has the kid 'key-nope'"):
        keys("disable", "key-nope")


def test_an_enabled_key_is_leased_again_in_its_lru_turn_and_its_time_out_is_kept():
    first, _ = seed(records=30, keys=2)
    batches = list(plan_run(batch_size=10).batches.order_by("seq"))
    keys("disable", first.kid)

    output = keys("enable", first.kid)

    first.refresh_from_db()
    assert (first.enabled, first.disabled_at) == (True, None)
    assert f"{first.kid} is enabled" in output
    [period] = first.disabled_periods.all()
    assert period.enabled_at > period.disabled_at
    # never used, it comes first again
    assert backend().lease_lru_key(batch_id=batches[0].pk, ttl_seconds=30).key_id == first.pk
    with pytest.raises(CommandError, match="no key has the kid 'key-nope'"):
        keys("enable", "key-nope")


def test_export_public_gives_every_key_also_the_disabled_ones():
    ed, p256 = seed(records=0, keys=1) + seed(records=0, keys=1, algorithm=crypto.ECDSA_P256_SHA256)
    keys("disable", ed.kid)

    jwks = json.loads(keys("export-public", "--format", "jwks"))
    pem = keys("export-public")

    assert {jwk["kid"] for jwk in jwks["keys"]} == {ed.kid, p256.kid}
    assert {jwk["kid"]: (jwk["kty"], jwk.get("alg")) for jwk in jwks["keys"]} == {
        ed.kid: ("OKP", "EdDSA"),
        p256.kid: ("EC", None),  # we store DER, not JOSE ES256's raw r||s: no alg claimed
    }
    assert f"# {ed.kid} (ed25519, disabled)" in pem
    assert f"# {p256.kid} ({crypto.ECDSA_P256_SHA256}, enabled)" in pem
    assert pem.count("-----BEGIN PUBLIC KEY-----") == 2
    for key in (ed, p256):
        assert key.public_key_pem.strip() in pem


def test_rotate_kek_reseals_every_key_under_the_new_one(monkeypatch):
    added = seed(records=0, keys=3) + seed(records=0, keys=2, algorithm=crypto.ECDSA_P256_SHA256)
    old_kek = sealing.kek_from_environment()
    new_kek = sealing.generate_kek()
    monkeypatch.setenv("SIGNING_NEW_KEK", new_kek)

    output = keys("rotate-kek")

    assert "re-sealed 5 private keys" in output
    for key in SigningKey.objects.filter(pk__in=[k.pk for k in added]):
        assert opens(sealing.parse_kek(new_kek), key)
        assert not opens(old_kek, key)


def test_rotate_kek_changes_nothing_when_the_current_kek_does_not_open_a_key(monkeypatch):
    seed(records=0, keys=2)
    before = list(SigningKey.objects.values_list("encrypted_private_key", flat=True))
    monkeypatch.setenv("SIGNING_KEK", sealing.generate_kek())  # not the one that sealed them
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())

    with pytest.raises(CommandError, match="SIGNING_KEK"):
        keys("rotate-kek")

    after = list(SigningKey.objects.values_list("encrypted_private_key", flat=True))
    assert [bytes(b) for b in after] == [bytes(b) for b in before]


def test_rotate_kek_needs_a_new_kek_and_no_active_run(monkeypatch):
    seed(records=10, keys=1)
    with pytest.raises(CommandError, match="SIGNING_NEW_KEK is not set"):
        keys("rotate-kek")
    monkeypatch.setenv("SIGNING_NEW_KEK", "too-short")
    with pytest.raises(CommandError, match="SIGNING_NEW_KEK must be 32 bytes"):
        keys("rotate-kek")
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())
    plan_run(batch_size=5)
    with pytest.raises(CommandError, match="a run is active"):
        keys("rotate-kek")
