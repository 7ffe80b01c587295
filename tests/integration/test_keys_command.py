"""manage.py keys: add, disable, enable, export-public, rotate-kek, against the real database."""

import io
import json
import os

import pytest
from django.core.management import CommandError, call_command

from kernel import crypto
from keyring import sealing
from keyring.exceptions import KekMismatch
from keyring.models import KeyDisabledPeriod, KeyLease, SigningKey
from keyring.selectors import public_jwks
from keyring.services import check_kek_opens_keyring, keyring_clock
from signing.backends import backend
from signing.runs.dispatch import plan_run
from tests.conftest import seed
from tests.integration.factories import lease_batch, seal_under

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

    refused = f"does not open the private key of {first.kid} "
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
    with pytest.raises(CommandError, match="SIGNING_NEW_KEK is not set") as missing:
        keys("rotate-kek")
    monkeypatch.setenv("SIGNING_NEW_KEK", "too-short")
    with pytest.raises(CommandError, match="SIGNING_NEW_KEK must be 32 bytes") as malformed:
        keys("rotate-kek")
    monkeypatch.setenv("SIGNING_NEW_KEK", os.environ["SIGNING_KEK"])
    with pytest.raises(CommandError, match="SIGNING_NEW_KEK is the current SIGNING_KEK") as same:
        keys("rotate-kek")
    for refused in (missing, malformed, same):  # `make kek` writes SIGNING_KEK, never this
        assert "make kek" not in str(refused.value)
        assert sealing.GENERATE_KEK in str(refused.value)
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())
    plan_run(batch_size=5)
    with pytest.raises(CommandError, match="a run is active"):
        keys("rotate-kek")


# --- a keyring sealed under two KEKs: the advice, `reseal` and `retire` (issue 20) --------
def test_after_a_rotation_add_with_the_old_kek_is_refused_saying_which_kek_to_set(monkeypatch):
    seed(records=0, keys=2)
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())
    keys("rotate-kek")  # SIGNING_KEK is still the old one, as in a .env not updated yet

    with pytest.raises(CommandError) as refused:
        keys("add")

    message = str(refused.value)
    assert "it is not the KEK the keys are sealed under" in message
    assert "after `manage.py keys rotate-kek`, the SIGNING_NEW_KEK it was given" in message
    assert "since `manage.py seed`" not in message
    assert "\n" not in message
    assert SigningKey.objects.count() == 2


def test_a_key_under_another_kek_blocks_rotation_until_reseal_opens_it(monkeypatch):
    # Given a keyring whose third key is sealed under another KEK
    *_, third = seed(records=0, keys=3)
    old_kek = sealing.generate_kek()
    seal_under(third, old_kek)
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())

    # Then rotation is refused, pointing to reseal and retire for that key alone
    with pytest.raises(CommandError) as refused:
        keys("rotate-kek")
    message = str(refused.value)
    assert f"does not open the private key of {third.kid}, though it opens the other 2" in message
    assert "keys reseal --old-kek-env VAR" in message
    assert "keys retire KID" in message

    # When that KEK is given by the name of the variable holding it
    monkeypatch.setenv("OLD_KEK", old_kek)
    output = keys("reseal", "--old-kek-env", "OLD_KEK")

    # Then that key alone was re-sealed under SIGNING_KEK, and rotation works again
    assert output.strip() == f"re-sealed under SIGNING_KEK: {third.kid}"
    assert old_kek not in output
    check_kek_opens_keyring()
    assert "re-sealed 3 private keys" in keys("rotate-kek")


def test_reseal_changes_nothing_unless_the_old_kek_opens_a_key_the_current_one_does_not(
    monkeypatch,
):
    _, second = seed(records=0, keys=2)
    seal_under(second, sealing.generate_kek())
    before = sealed_now()

    monkeypatch.delenv("OLD_KEK", raising=False)
    with pytest.raises(CommandError, match="OLD_KEK is not set: export OLD_KEK as the KEK"):
        keys("reseal", "--old-kek-env", "OLD_KEK")
    monkeypatch.setenv("OLD_KEK", sealing.generate_kek())  # not the one that sealed it
    with pytest.raises(
        CommandError, match=f"OLD_KEK does not open the private key of {second.kid}"
    ) as refused:
        keys("reseal", "--old-kek-env", "OLD_KEK")
    assert "keys retire KID" in str(refused.value)
    monkeypatch.setenv("OLD_KEK", os.environ["SIGNING_KEK"])
    with pytest.raises(CommandError, match="OLD_KEK is the current SIGNING_KEK"):
        keys("reseal", "--old-kek-env", "OLD_KEK")
    with pytest.raises(CommandError, match="the following arguments are required"):
        keys("reseal")

    assert sealed_now() == before


def test_reseal_refuses_a_current_kek_that_opens_no_key_and_while_a_run_is_active(monkeypatch):
    # A SIGNING_KEK opening nothing is the wrong .env, not a few keys left behind: re-sealing
    # every key under it would be a rotation the workers were not told of
    seed(records=10, keys=2)
    keyring_kek = os.environ["SIGNING_KEK"]
    monkeypatch.setenv("SIGNING_KEK", sealing.generate_kek())
    monkeypatch.setenv("OLD_KEK", keyring_kek)
    before = sealed_now()
    with pytest.raises(CommandError, match="it is not the KEK the keys are sealed under"):
        keys("reseal", "--old-kek-env", "OLD_KEK")

    monkeypatch.setenv("SIGNING_KEK", keyring_kek)
    monkeypatch.setenv("OLD_KEK", sealing.generate_kek())
    assert "SIGNING_KEK opens every key already: nothing to re-seal" in keys(
        "reseal", "--old-kek-env", "OLD_KEK"
    )
    plan_run(batch_size=5)
    with pytest.raises(CommandError, match=r"a run is active: .* then re-seal"):
        keys("reseal", "--old-kek-env", "OLD_KEK")
    assert sealed_now() == before


def test_reseal_reports_the_keys_neither_kek_opens_and_re_seals_the_rest(monkeypatch):
    _, second, third = seed(records=0, keys=3)
    old_kek, lost_kek = sealing.generate_kek(), sealing.generate_kek()
    seal_under(second, old_kek)
    seal_under(third, lost_kek)
    monkeypatch.setenv("OLD_KEK", old_kek)

    output = keys("reseal", "--old-kek-env", "OLD_KEK")

    assert f"re-sealed under SIGNING_KEK: {second.kid}\n" in output
    assert f"opened by neither KEK, left as they were: {third.kid}." in output
    assert opens(sealing.kek_from_environment(), SigningKey.objects.get(pk=second.pk))
    assert opens(sealing.parse_kek(lost_kek), SigningKey.objects.get(pk=third.pk))


def test_retire_takes_a_key_whose_kek_is_lost_out_for_good_and_keeps_its_public_key(
    monkeypatch,
):
    # Given a key sealed under a KEK nobody has any more
    _, second = seed(records=0, keys=2)
    seal_under(second, sealing.generate_kek())
    with pytest.raises(KekMismatch):
        check_kek_opens_keyring()

    # When it is retired
    output = keys("retire", second.kid)

    # Then it is disabled, its sealed private key erased, and it is retired for good
    second.refresh_from_db()
    assert f"{second.kid} is retired (since {second.retired_at.isoformat()})" in output
    assert (second.enabled, bytes(second.encrypted_private_key)) == (False, b"")
    assert second.disabled_at == second.retired_at
    assert KeyDisabledPeriod.objects.get(key=second).enabled_at is None
    with pytest.raises(CommandError, match=f"{second.kid} was retired at"):
        keys("enable", second.kid)
    assert keys("retire", second.kid) == output  # retiring twice changes nothing
    assert "not leased again ever (it is retired)" in keys("disable", second.kid)
    # the rest of the keyring opens, takes new keys and rotates; its public key stays
    check_kek_opens_keyring()
    assert "added key-0003-" in keys("add")
    monkeypatch.setenv("SIGNING_NEW_KEK", sealing.generate_kek())
    assert "re-sealed 2 private keys" in keys("rotate-kek")
    assert second.kid in {jwk["kid"] for jwk in public_jwks()["keys"]}
    assert f"# {second.kid} (ed25519, retired)" in keys("export-public")


def test_retire_refuses_a_key_a_lease_holds_and_an_unknown_kid():
    [key] = seed(records=10, keys=1)
    lease_batch(plan_run(batch_size=10).batches.get())

    with pytest.raises(CommandError, match=f"a lease holds {key.kid} now: disable it") as held:
        keys("retire", key.kid)
    assert "\n" not in str(held.value)
    key.refresh_from_db()
    assert (key.enabled, key.retired_at) == (True, None)
    with pytest.raises(CommandError, match="no key has the kid 'key-nope'"):
        keys("retire", "key-nope")


def sealed_now() -> list[bytes]:
    return [
        bytes(b)
        for b in SigningKey.objects.order_by("id").values_list("encrypted_private_key", flat=True)
    ]
