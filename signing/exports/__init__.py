"""Offline verification: an export of signed records, their public keys and Merkle proofs
that anyone can check with tools/verify_export.py and nothing else (issue 18, points 4-5)."""
