"""kernel.crypto: the signing-input contract and sign/verify, with no database."""

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from kernel import crypto

record_ids = st.integers(min_value=1, max_value=2**63 - 1)
payloads = st.text()


def test_signing_input_is_byte_exact():
    assert crypto.signing_input(42, "héllo 🙂") == b"sig-v1\n42\nh\xc3\xa9llo \xf0\x9f\x99\x82"


def test_signing_input_keeps_id_and_payload_apart():
    assert crypto.signing_input(1, "2x") != crypto.signing_input(12, "x")


@given(record_ids, payloads, record_ids, payloads)
def test_signing_input_is_injective(id_a, payload_a, id_b, payload_b):
    same_record = (id_a, payload_a) == (id_b, payload_b)
    same_input = crypto.signing_input(id_a, payload_a) == crypto.signing_input(id_b, payload_b)
    assert same_record == same_input


@pytest.mark.parametrize("algorithm", crypto.ALGORITHMS)
@given(record_id=record_ids, payload=payloads)
def test_any_record_signed_verifies_with_the_public_key(algorithm, record_id, payload):
    private_key = _keys[algorithm]
    public_key = crypto.load_public_key(crypto.public_key_pem(private_key))
    data = crypto.signing_input(record_id, payload)
    assert crypto.verify(public_key, data, crypto.sign(private_key, data))


@pytest.mark.parametrize("algorithm", crypto.ALGORITHMS)
def test_a_signature_does_not_verify_another_record(algorithm):
    private_key = _keys[algorithm]
    public_key = crypto.load_public_key(crypto.public_key_pem(private_key))
    signature = crypto.sign(private_key, crypto.signing_input(1, "payload"))
    assert not crypto.verify(public_key, crypto.signing_input(2, "payload"), signature)
    assert not crypto.verify(public_key, crypto.signing_input(1, "payload!"), signature)
    assert not crypto.verify(public_key, crypto.signing_input(1, "payload"), b"\0" * 64)


def test_a_signature_does_not_verify_with_another_key():
    signer, other = crypto.generate_private_key(), crypto.generate_private_key()
    data = crypto.signing_input(7, "x")
    other_public = crypto.load_public_key(crypto.public_key_pem(other))
    assert not crypto.verify(other_public, data, crypto.sign(signer, data))


def test_private_keys_survive_der_round_trip():
    for algorithm in crypto.ALGORITHMS:
        key = crypto.generate_private_key(algorithm)
        again = crypto.private_key_from_der(crypto.private_key_to_der(key))
        assert crypto.public_key_pem(again) == crypto.public_key_pem(key)


def test_sign_records_signs_each_record_on_its_own():
    key = _keys[crypto.ED25519]
    public_key = crypto.load_public_key(crypto.public_key_pem(key))
    signed = crypto.sign_records(key, [(1, "same"), (2, "same")])
    assert [s.record_id for s in signed] == [1, 2]
    assert signed[0].signature != signed[1].signature
    for record_id, item in zip([1, 2], signed, strict=True):
        assert crypto.verify(public_key, crypto.signing_input(record_id, "same"), item.signature)


def test_unknown_algorithm_is_refused():
    with pytest.raises(crypto.UnknownAlgorithm):
        crypto.generate_private_key("rsa-512")


def test_an_ed25519_jwk_says_eddsa_whose_signatures_are_the_64_raw_bytes_we_store():
    key = _keys[crypto.ED25519]
    jwk = crypto.public_jwk(key.public_key(), "key-1")
    raw_x = base64.urlsafe_b64decode(jwk["x"] + "==")
    signature = crypto.sign(key, b"message")

    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert len(signature) == 64  # RFC 8037: the raw signature, as EdDSA in JOSE expects
    ed25519.Ed25519PublicKey.from_public_bytes(raw_x).verify(signature, b"message")


def test_a_p256_jwk_claims_no_alg_since_we_store_der_and_jose_es256_means_raw_r_and_s():
    key = _keys[crypto.ECDSA_P256_SHA256]
    jwk = crypto.public_jwk(key.public_key(), "key-2")
    signature = crypto.sign(key, b"message")

    # A JOSE library told "ES256" expects r||s in 64 bytes (RFC 7518 3.4) and would refuse
    # every signature we store; without "alg" (optional, RFC 7517 4.4) it claims nothing.
    assert "alg" not in jwk
    assert (jwk["kty"], jwk["crv"], jwk["use"]) == ("EC", "P-256", "sig")
    r, s = decode_dss_signature(signature)  # what we store is DER: SEQUENCE { r, s }
    assert encode_dss_signature(r, s) == signature
    point = ec.EllipticCurvePublicNumbers(
        int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="), "big"),
        int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big"),
        ec.SECP256R1(),
    )
    point.public_key().verify(signature, b"message", ec.ECDSA(hashes.SHA256()))


_keys = {algorithm: crypto.generate_private_key(algorithm) for algorithm in crypto.ALGORITHMS}
