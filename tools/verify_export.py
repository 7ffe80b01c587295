#!/usr/bin/env python3
"""Verify an export of the signing service offline: `python verify_export.py DIR [--json]`.

One file, for anyone who received an export (`manage.py export --out DIR`): it needs Python
3.11 or newer and the `cryptography` package, nothing else; no database, no service. It
checks, and names whatever fails:

- manifest.json: readable, of a format this verifier knows; the SHA-256 and size of
  records.jsonl and jwks.json are the ones it records; its counts are what the files hold;
- every run: its batches in seq order, its root the RFC 6962 root over their leaves, and each
  batch's path leading from its leaf to that root;
- every checkpoint of a follow run: its signature verifies with its kid's key over the
  checkpoint input, and, when the export holds the run's first `batches` batches, its root
  is the root over them;
- every record of records.jsonl: its signature verifies with its kid's key from jwks.json
  over the signing input, with that key's algorithm; its proof leads from its leaf to its
  batch's root; no two records take one place in a batch, and no place is left empty.

Exit status 0 when everything checks out (a short summary), 1 naming each bad record (by id),
file, batch or run, 2 when the command line is wrong. What it cannot tell: whether the run
roots are the ones the service published. Compare them (printed in the summary) with the
run's page or `GET /api/runs/{id}/` of the service you trust.

The functions under "Mirrors" copy kernel/crypto.py's signing input and kernel/merkle.py's
hashing from the service's source, so that this file stands alone;
tests/unit/test_verify_export.py checks that they agree with the originals.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

FORMAT = "signing-export/1"
RECORDS, JWKS, MANIFEST = "records.jsonl", "jwks.json", "manifest.json"
ED25519, ECDSA_P256_SHA256 = "ed25519", "ecdsa-p256-sha256"
MISSING_SHOWN = 10  # empty places of one batch named in full before "and N more"


# --- Mirrors of kernel/crypto.py (signing_input) and kernel/merkle.py --------------------
def signing_input(record_id: int, payload: str) -> bytes:
    """The bytes signed for a record: UTF-8 of "sig-v1\\n" + str(id) + "\\n" + payload."""
    return b"sig-v1\n%d\n%s" % (record_id, payload.encode("utf-8"))


def checkpoint_input(run_id: int, batches: int, root: bytes) -> bytes:
    """The bytes a follow run's checkpoint signs: ASCII of "ckpt-v1\\n" + str(run id) +
    "\\n" + str(batches) + "\\n" + the root in lowercase hex."""
    return b"ckpt-v1\n%d\n%d\n%s" % (run_id, batches, root.hex().encode())


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def record_leaf(record_id: int, signature: bytes) -> bytes:
    return leaf_hash(record_id.to_bytes(8, "big") + signature)


def batch_leaf(seq: int, batch_root: bytes) -> bytes:
    return leaf_hash(seq.to_bytes(8, "big") + batch_root)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962's root over leaf hashes (the hash of nothing for no leaf)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root a leaf at `index` of a `size`-leaf tree and its path imply (RFC 9162
    2.1.3.2), or None if the path cannot belong to such a tree."""
    if not 0 <= index < size:
        return None
    node, last = leaf, size - 1
    steps = iter(proof)
    while last > 0:
        if index % 2 == 1 or index < last:
            sibling = next(steps, None)
            if sibling is None:
                return None
            node = node_hash(sibling, node) if index % 2 == 1 else node_hash(node, sibling)
        index //= 2
        last //= 2
    return None if next(steps, None) is not None else node


# --- Keys ----------------------------------------------------------------------------------
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def public_key_from_jwk(jwk: Any) -> tuple[str, PublicKey]:
    """The algorithm and key a JWK holds: OKP Ed25519, or EC P-256 (whose signatures in the
    export are DER-encoded ECDSA over SHA-256, as the service stores them)."""
    if not isinstance(jwk, dict):
        raise ValueError("not a JSON object")
    if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        raw = _b64url(jwk.get("x"), 32)
        return ED25519, ed25519.Ed25519PublicKey.from_public_bytes(raw)
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        x = int.from_bytes(_b64url(jwk.get("x"), 32), "big")
        y = int.from_bytes(_b64url(jwk.get("y"), 32), "big")
        try:
            key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except ValueError:
            raise ValueError("its x and y are not a point of P-256") from None
        return ECDSA_P256_SHA256, key
    raise ValueError("neither an OKP Ed25519 nor an EC P-256 key")


def signature_verifies(key: PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _b64url(text: Any, length: int) -> bytes:
    if not isinstance(text, str):
        raise ValueError("a coordinate is not a string")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("a coordinate is not base64url") from None
    if len(raw) != length:
        raise ValueError(f"a coordinate is not {length} bytes")
    return raw


# --- Reading untrusted JSON ------------------------------------------------------------------
class Malformed(ValueError):
    """A value of the export is not of the shape the format says."""


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Malformed(f"{what} is not a whole number of at least {minimum}")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise Malformed(f"{what} is not a string")
    return value


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{what} is not a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise Malformed(f"{what} is not a list")
    return value


def _hash(value: Any, what: str) -> bytes:
    text = _str(value, what)
    if len(text) != 64:
        raise Malformed(f"{what} is not 64 hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise Malformed(f"{what} is not 64 hex digits") from None


def _path(value: Any, what: str) -> list[bytes]:
    return [_hash(node, f"{what}[{i}]") for i, node in enumerate(_list(value, what))]


# --- The verification ------------------------------------------------------------------------
@dataclass
class Problem:
    kind: str  # "file", "run", "checkpoint", "batch" or "record"
    name: str  # the file's name, or the run's, batch's or record's id (a line number if none)
    problem: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}: {self.problem}"


@dataclass
class BatchState:
    run: int
    seq: int
    size: int
    root: bytes
    # The places of the batch's tree a valid record took. A set, not a bytearray of `size`:
    # the size is the manifest's word, and a forged one must not make this allocate it.
    seen: set[int] = field(default_factory=set)


@dataclass
class Report:
    directory: Path
    problems: list[Problem] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    run_roots: dict[int, str] = field(default_factory=dict)
    # (run, batches, root hex, whether the export held its batches to check the root)
    checkpoints: list[tuple[int, int, str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad(self, kind: str, name: object, problem: str) -> None:
        self.problems.append(Problem(kind, str(name), problem))

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "ok": self.ok,
            "counts": self.counts,
            "run_roots": {str(run): root for run, root in self.run_roots.items()},
            "checkpoints": [
                {"run": run, "batches": count, "root": root, "root_checked": checked}
                for run, count, root, checked in self.checkpoints
            ],
            "problems": [vars(problem) for problem in self.problems],
        }


def verify_export(directory: Path) -> Report:
    report = Report(directory)
    try:
        manifest = _dict(json.loads((directory / MANIFEST).read_bytes()), MANIFEST)
        if manifest.get("format") != FORMAT:
            raise Malformed(f"its format is {manifest.get('format')!r}, not {FORMAT!r}")
        files = _dict(manifest.get("files"), "files")
        expected = {name: _dict(files.get(name), f"files.{name}") for name in (RECORDS, JWKS)}
        counts = _dict(manifest.get("counts"), "counts")
        runs = _list(manifest.get("runs"), "runs")
    except FileNotFoundError:
        report.bad("file", MANIFEST, "missing: the export is unfinished or not an export")
        return report
    except (ValueError, Malformed) as error:  # JSON's errors are ValueErrors
        report.bad("file", MANIFEST, str(error))
        return report

    keys = _read_jwks(directory, expected[JWKS], report)
    batches = _check_runs(runs, keys, report)
    seen = _check_records(directory, expected[RECORDS], keys, batches, report)
    _check_places(batches, report)
    actual = {
        "runs": len(runs),
        "batches": len(batches),
        "records": seen,
        "keys": len(keys),
    }
    for name, value in actual.items():
        if counts.get(name) != value:
            report.bad(
                "file", MANIFEST, f"counts {name} {counts.get(name)!r}, the export holds {value}"
            )
    report.counts = actual
    return report


def _file_matches(
    name: str, digest: str, size: int, expected: dict[str, Any], report: Report
) -> None:
    if expected.get("sha256") != digest or expected.get("bytes") != size:
        report.bad("file", name, "its SHA-256 or size is not the one manifest.json records")


def _read_jwks(
    directory: Path, expected: dict[str, Any], report: Report
) -> dict[str, tuple[str, PublicKey]]:
    try:
        data = (directory / JWKS).read_bytes()
    except FileNotFoundError:
        report.bad("file", JWKS, "missing")
        return {}
    _file_matches(JWKS, hashlib.sha256(data).hexdigest(), len(data), expected, report)
    try:
        listed = _list(_dict(json.loads(data), JWKS).get("keys"), "keys")
    except (ValueError, Malformed) as error:
        report.bad("file", JWKS, str(error))
        return {}
    keys: dict[str, tuple[str, PublicKey]] = {}
    for position, jwk in enumerate(listed):
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if not isinstance(kid, str):
            report.bad("file", JWKS, f"key {position} has no kid")
            continue
        if kid in keys:
            report.bad("file", JWKS, f"key {kid} is listed twice")
            continue
        try:
            keys[kid] = public_key_from_jwk(jwk)
        except ValueError as error:
            report.bad("file", JWKS, f"key {kid}: {error}")
    return keys


def _check_runs(
    runs: list[Any], keys: dict[str, tuple[str, PublicKey]], report: Report
) -> dict[int, BatchState]:
    """Each run's root against its batches' roots, each batch's path to it; the batches by id."""
    batches: dict[int, BatchState] = {}
    for position, entry in enumerate(runs):
        name = entry.get("id", f"#{position}") if isinstance(entry, dict) else f"#{position}"
        try:
            run = _dict(entry, f"runs[{position}]")
            run_id = _int(run.get("id"), f"runs[{position}].id", 1)
            root = _hash(run.get("root"), "root")
            listed = _list(run.get("batches"), "batches")
            parsed = []
            for i, batch in enumerate(listed):
                batch = _dict(batch, f"batches[{i}]")
                parsed.append(
                    (
                        _int(batch.get("id"), f"batches[{i}].id", 1),
                        _int(batch.get("seq"), f"batches[{i}].seq"),
                        _int(batch.get("records"), f"batches[{i}].records"),
                        _hash(batch.get("root"), f"batches[{i}].root"),
                        _path(batch.get("path"), f"batches[{i}].path"),
                    )
                )
        except Malformed as error:
            report.bad("run", name, str(error))
            continue
        report.run_roots[run_id] = root.hex()
        leaves = [batch_leaf(seq, batch_root) for _, seq, _, batch_root, _ in parsed]
        _check_checkpoints(run_id, run.get("checkpoints", []), leaves, parsed, keys, report)
        if run.get("batch_count") != len(parsed):
            report.bad(
                "run", run_id, f"batch_count {run.get('batch_count')!r}, it lists {len(parsed)}"
            )
        if run.get("records") != sum(size for _, _, size, _, _ in parsed):
            report.bad("run", run_id, "its records count is not the sum of its batches'")
        seqs = [seq for _, seq, _, _, _ in parsed]
        if any(a >= b for a, b in itertools.pairwise(seqs)):
            report.bad("run", run_id, "its batches are not in strictly increasing seq order")
        if merkle_root(leaves) != root:
            report.bad("run", run_id, "its root is not the root over its batches' roots")
        for index, (batch_id, seq, size, batch_root, path) in enumerate(parsed):
            if batch_id in batches:
                report.bad("batch", batch_id, "listed twice in manifest.json")
                continue
            if root_from_proof(leaves[index], index, len(leaves), path) != root:
                report.bad("batch", batch_id, f"its path does not lead to run {run_id}'s root")
            batches[batch_id] = BatchState(run_id, seq, size, batch_root)
    return batches


def _check_checkpoints(
    run_id: int,
    listed: Any,
    leaves: list[bytes],
    parsed: list[tuple[int, int, int, bytes, list[bytes]]],
    keys: dict[str, tuple[str, PublicKey]],
    report: Report,
) -> None:
    """A follow run's checkpoints (none in an ordinary run's entry): each signature with its
    key, and each root over the run's first `batches` batches when the export holds them
    all (an export of a run still going may end before a checkpoint's batches, never
    after: it reads the checkpoints first)."""
    seqs = [seq for _, seq, _, _, _ in parsed]
    try:
        entries = _list(listed, "checkpoints")
    except Malformed as error:
        report.bad("run", run_id, str(error))
        return
    for position, entry in enumerate(entries):
        name = f"#{position} of run {run_id}"
        try:
            checkpoint = _dict(entry, "the checkpoint")
            count = _int(checkpoint.get("batches"), "batches", 1)
            name = f"{count} of run {run_id}"
            root = _hash(checkpoint.get("root"), "root")
            kid = _str(checkpoint.get("kid"), "kid")
            algorithm = _str(checkpoint.get("algorithm"), "algorithm")
            try:
                signature = base64.b64decode(
                    _str(checkpoint.get("signature"), "signature"), validate=True
                )
            except binascii.Error:
                raise Malformed("signature is not base64") from None
        except Malformed as error:
            report.bad("checkpoint", name, str(error))
            continue
        if kid not in keys:
            report.bad("checkpoint", name, f"its kid {kid} is not in jwks.json")
        elif algorithm != keys[kid][0]:
            report.bad(
                "checkpoint", name, f"algorithm {algorithm}, but key {kid} is {keys[kid][0]}"
            )
        elif not signature_verifies(keys[kid][1], checkpoint_input(run_id, count, root), signature):
            report.bad("checkpoint", name, f"its signature does not verify with key {kid}")
        held = seqs[:count] == list(range(1, count + 1))
        if held and merkle_root(leaves[:count]) != root:
            report.bad("checkpoint", name, f"its root is not the root over batches 1 to {count}")
        report.checkpoints.append((run_id, count, root.hex(), held))


def _check_records(
    directory: Path,
    expected: dict[str, Any],
    keys: dict[str, tuple[str, PublicKey]],
    batches: dict[int, BatchState],
    report: Report,
) -> int:
    """Every line of records.jsonl, streamed: memory grows only with the places taken."""
    digest, size, lines = hashlib.sha256(), 0, 0
    try:
        file = (directory / RECORDS).open("rb")
    except FileNotFoundError:
        report.bad("file", RECORDS, "missing")
        return 0
    with file:
        for number, line in enumerate(file, start=1):
            digest.update(line)
            size += len(line)
            lines += 1
            _check_record(number, line, keys, batches, report)
    _file_matches(RECORDS, digest.hexdigest(), size, expected, report)
    return lines


def _check_record(
    number: int,
    line: bytes,
    keys: dict[str, tuple[str, PublicKey]],
    batches: dict[int, BatchState],
    report: Report,
) -> None:
    name: object = f"at line {number}"
    try:
        record = _dict(json.loads(line), "the line")
        record_id = _int(record.get("id"), "id", 1)
        name = record_id
        payload = _str(record.get("payload"), "payload")
        try:
            signature = base64.b64decode(_str(record.get("signature"), "signature"), validate=True)
        except binascii.Error:
            raise Malformed("signature is not base64") from None
        kid = _str(record.get("kid"), "kid")
        algorithm = _str(record.get("algorithm"), "algorithm")
        batch_ref = _dict(record.get("batch"), "batch")
        batch_id = _int(batch_ref.get("id"), "batch.id", 1)
        proof = _dict(record.get("proof"), "proof")
        index = _int(proof.get("index"), "proof.index")
        path = _path(proof.get("path"), "proof.path")
    except (ValueError, Malformed) as error:
        report.bad("record", name, str(error))
        return

    if kid not in keys:
        report.bad("record", record_id, f"its kid {kid} is not in jwks.json")
    else:
        key_algorithm, key = keys[kid]
        if algorithm != key_algorithm:
            report.bad(
                "record", record_id, f"algorithm {algorithm}, but key {kid} is {key_algorithm}"
            )
        elif not signature_verifies(key, signing_input(record_id, payload), signature):
            report.bad("record", record_id, f"its signature does not verify with key {kid}")

    batch = batches.get(batch_id)
    if batch is None:
        report.bad(
            "record", record_id, f"names batch {batch_id}, which manifest.json does not list"
        )
        return
    if batch_ref.get("seq") != batch.seq or batch_ref.get("run") != batch.run:
        report.bad(
            "record",
            record_id,
            f"names batch {batch_id} with another seq or run than manifest.json",
        )
    if root_from_proof(record_leaf(record_id, signature), index, batch.size, path) != batch.root:
        report.bad("record", record_id, f"its proof does not lead to batch {batch_id}'s root")
        return
    if index in batch.seen:
        report.bad("record", record_id, f"listed twice (place {index} of batch {batch_id})")
        return
    batch.seen.add(index)


def _check_places(batches: dict[int, BatchState], report: Report) -> None:
    """A batch's every place must have been taken by a valid record: one dropped, or one
    replaced by a forgery, leaves its place empty."""
    for batch_id, batch in batches.items():
        empty = batch.size - len(batch.seen)
        if not empty:
            continue
        first = itertools.islice(
            (index for index in range(batch.size) if index not in batch.seen), MISSING_SHOWN
        )
        more = f" and {empty - MISSING_SHOWN:,} more" if empty > MISSING_SHOWN else ""
        report.bad(
            "batch",
            batch_id,
            f"no valid record at place {', '.join(map(str, first))}{more} of {batch.size:,} "
            f"(run {batch.run})",
        )


def _amount(count: int, plural: str) -> str:
    return f"{count:,} {plural if count != 1 else plural[:-1]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="the export's directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    arguments = parser.parse_args(argv)
    report = verify_export(arguments.directory)
    if arguments.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.ok else 1
    for problem in report.problems:
        print(f"BAD {problem}")
    counts = report.counts
    held = ", ".join(
        _amount(counts.get(name, 0), name) for name in ("records", "batches", "runs", "keys")
    )
    if report.ok:
        print(f"OK {arguments.directory}: {held}; every signature, proof and root checks out")
        for run, root in report.run_roots.items():
            print(f"run {run} root {root}")
        for run, count, root, held in report.checkpoints:
            unchecked = "" if held else " (signature only: the export ends before it)"
            print(f"run {run} checkpoint at {count} batches root {root}{unchecked}")
        return 0
    print(f"FAILED {arguments.directory}: {len(report.problems):,} problems ({held})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
