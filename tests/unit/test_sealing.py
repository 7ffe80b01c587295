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
    with pytest.raises(KekMismatch, match="not the KEK the keys were sealed with"):
        sealing.unseal(sealing.parse_kek(sealing.generate_kek()), "key-0001", sealed)


def test_a_sealed_key_moved_to_another_kid_does_not_open():
    kek = sealing.parse_kek(sealing.generate_kek())
    sealed = sealing.seal(kek, "key-0001", b"secret")
    with pytest.raises(KekMismatch):
        sealing.unseal(kek, "key-0002", sealed)


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_a_missing_kek_says_how_to_set_one(raw):
    with pytest.raises(KekMissing, match="SIGNING_KEK is not set: run `make kek`"):
        sealing.parse_kek(raw)


@pytest.mark.parametrize("raw", ["short", "!!!!", "a" * 44, "é" * 44, sealing.generate_kek()[:-4]])
def test_a_malformed_kek_is_refused(raw):
    with pytest.raises(KekMalformed, match="32 bytes"):
        sealing.parse_kek(raw)


def test_the_error_never_echoes_the_kek():
    raw = sealing.generate_kek()[:-4]
    with pytest.raises(KekMalformed) as caught:
        sealing.parse_kek(raw)
    assert raw not in str(caught.value)
