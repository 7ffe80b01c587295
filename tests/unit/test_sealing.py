"""keyring.sealing: private keys at rest under the KEK, and clear errors for a bad KEK."""

import pytest

from keyring import sealing
from keyring.exceptions import KekMalformed, KekMismatch, KekMissing


def test_sealed_secret_opens_with_the_same_kek_and_kid():
    kek = sealing.parse_kek(sealing.generate_kek())
    sealed = sealing.seal(kek, "key-0001", b"secret bytes")
    assert b"secret bytes" not in sealed
    assert sealing.unseal(kek, "key-0001", sealed) == b"secret bytes"


def test_another_kek_is_a_clear_mismatch():
    sealed = sealing.seal(sealing.parse_kek(sealing.generate_kek()), "key-0001", b"secret")
    with pytest.raises(KekMismatch, match="not the KEK that key is sealed under") as caught:
        sealing.unseal(sealing.parse_kek(sealing.generate_kek()), "key-0001", sealed)
    assert "since `manage.py seed`" not in str(caught.value)  # a rotation is likelier


def test_a_sealed_key_moved_to_another_kid_does_not_open():
    kek = sealing.parse_kek(sealing.generate_kek())
    sealed = sealing.seal(kek, "key-0001", b"secret")
    with pytest.raises(KekMismatch):
        sealing.unseal(kek, "key-0002", sealed)


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_a_missing_kek_says_how_to_set_one(raw):
    with pytest.raises(KekMissing, match="SIGNING_KEK is not set: set it") as caught:
        sealing.parse_kek(raw)
    # `make kek` only helps a new keyring: it writes a random KEK, never the keys' own
    assert "the KEK the keys are sealed under" in str(caught.value)
    assert "for a new keyring, `make kek` writes a random one" in str(caught.value)


def test_a_malformed_kek_is_not_sent_to_make_kek_which_keeps_a_kek_already_set():
    with pytest.raises(KekMalformed) as caught:
        sealing.parse_kek("short")
    assert "make kek" not in str(caught.value)
    assert "correct its value in .env or the environment" in str(caught.value)


@pytest.mark.parametrize("raw", ["", "short"])
def test_the_new_kek_for_a_rotation_is_sent_to_a_generator_not_to_make_kek(monkeypatch, raw):
    monkeypatch.setenv(sealing.NEW_KEK_ENV, raw)
    with pytest.raises((KekMissing, KekMalformed)) as caught:
        sealing.new_kek_from_environment()
    message = str(caught.value)
    assert message.startswith("SIGNING_NEW_KEK ")
    assert sealing.GENERATE_KEK in message
    assert "make kek" not in message  # it writes SIGNING_KEK, and only where none is set
    assert "export SIGNING_KEK" not in message


def test_an_old_kek_variable_is_named_and_asked_for_the_keys_old_kek(monkeypatch):
    monkeypatch.delenv("OLD", raising=False)
    with pytest.raises(KekMissing, match="OLD is not set: export OLD as the KEK those keys"):
        sealing.old_kek_from_environment("OLD")


@pytest.mark.parametrize("raw", ["short", "!!!!", "a" * 44, "é" * 44, sealing.generate_kek()[:-4]])
def test_a_malformed_kek_is_refused(raw):
    with pytest.raises(KekMalformed, match="32 bytes"):
        sealing.parse_kek(raw)


def test_the_error_never_echoes_the_kek():
    raw = sealing.generate_kek()[:-4]
    with pytest.raises(KekMalformed) as caught:
        sealing.parse_kek(raw)
    assert raw not in str(caught.value)
