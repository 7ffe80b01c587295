"""tools/verify_export.py stands alone: it imports only the standard library and
cryptography, and its copies of the signing input and Merkle hashing agree with
kernel/crypto.py and kernel/merkle.py."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel import crypto, merkle

VERIFIER = Path(__file__).resolve().parent.parent.parent / "tools" / "verify_export.py"


def load_verifier():
    spec = importlib.util.spec_from_file_location("verify_export", VERIFIER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["verify_export"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


verifier = load_verifier()
record_ids = st.integers(min_value=1, max_value=2**63 - 1)
hashes = st.binary(min_size=32, max_size=32)


def test_it_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(VERIFIER.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"cryptography"}


@given(record_id=record_ids, payload=st.text())
def test_its_signing_input_is_kernel_cryptos(record_id, payload):
    assert verifier.signing_input(record_id, payload) == crypto.signing_input(record_id, payload)


@given(run_id=record_ids, batches=st.integers(1, 2**31), root=hashes)
def test_its_checkpoint_input_is_kernel_merkles(run_id, batches, root):
    assert verifier.checkpoint_input(run_id, batches, root) == merkle.checkpoint_input(
        run_id, batches, root
    )


def test_the_checkpoint_input_is_the_documented_bytes():
    root = bytes(range(32))
    assert merkle.checkpoint_input(12, 300, root) == b"ckpt-v1\n12\n300\n" + root.hex().encode()
    with pytest.raises(ValueError, match="32 bytes"):
        merkle.checkpoint_input(12, 300, root[:31])


@given(
    record_id=record_ids, signature=st.binary(max_size=80), seq=st.integers(0, 2**31), root=hashes
)
def test_its_leaves_are_kernel_merkles(record_id, signature, seq, root):
    assert verifier.record_leaf(record_id, signature) == merkle.record_leaf(record_id, signature)
    assert verifier.batch_leaf(seq, root) == merkle.batch_leaf(seq, root)
    assert verifier.node_hash(root, root[::-1]) == merkle.node_hash(root, root[::-1])


@given(leaves=st.lists(hashes, max_size=40), data=st.data())
def test_its_root_and_proof_check_are_kernel_merkles(leaves, data):
    assert verifier.merkle_root(leaves) == merkle.root(leaves)
    if not leaves:
        return
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle.inclusion_proofs(leaves)[index]
    size = data.draw(st.integers(1, len(leaves) + 3))
    path = data.draw(st.sampled_from([proof, proof[:-1], [*proof, leaves[0]], proof[::-1]]))
    assert verifier.root_from_proof(leaves[index], index, size, path) == merkle.root_from_proof(
        leaves[index], index, size, path
    )


@pytest.mark.parametrize("algorithm", crypto.ALGORITHMS)
def test_it_reads_the_services_jwks_and_verifies_its_signatures(algorithm):
    private_key = crypto.generate_private_key(algorithm)
    public_key = crypto.load_public_key(crypto.public_key_pem(private_key))
    data = crypto.signing_input(7, "payload")
    signature = crypto.sign(private_key, data)

    read_algorithm, key = verifier.public_key_from_jwk(crypto.public_jwk(public_key, "k-1"))

    assert read_algorithm == algorithm
    assert verifier.signature_verifies(key, data, signature)
    assert not verifier.signature_verifies(key, data + b"!", signature)


@pytest.mark.parametrize(
    "jwk",
    [
        None,
        {"kty": "RSA", "n": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "x": "short"},
        {"kty": "OKP", "crv": "Ed25519", "x": 5},
        {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43},  # not on the curve
        {"kty": "EC", "crv": "P-384", "x": "A" * 64, "y": "A" * 64},
    ],
)
def test_a_bad_jwk_is_a_value_error(jwk):
    with pytest.raises(ValueError, match=r"JSON object|neither|coordinate|not a point"):
        verifier.public_key_from_jwk(jwk)
