"""Write an export: records.jsonl, jwks.json and manifest.json (docs/usage.md, "Exporting
for offline verification", says what each holds).

Memory stays bounded whatever the number of records: the export goes batch by batch, and a
batch page by page, twice: once for its Merkle tree's leaves (32 bytes each, see
signing/exports/tree.py), once for its records' lines, each written with its path. Only the
runs' lists of batches (and the manifest they make) are held whole.

Files are written under temporary names in the directory and given their names when
complete, manifest.json last: an export without a manifest is unfinished, and a verifier refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from kernel import crypto, merkle
from keyring.models import SigningKey
from signing.exports.selectors import (
    BatchToExport,
    CheckpointToExport,
    RunToExport,
    batch_signatures,
    batch_signed_rows,
    runs_to_export,
    signature_count,
)
from signing.exports.tree import CompactTree

FORMAT: Final = "signing-export/1"
RECORDS: Final = "records.jsonl"
JWKS: Final = "jwks.json"
MANIFEST: Final = "manifest.json"
PARTIAL_SUFFIX: Final = ".partial"


class ExportError(Exception):
    """The export could not be written; nothing was left that looks complete."""


class ExportDirNotEmpty(ExportError):
    """The directory holds files already: an export never overwrites anything."""


class ExportInconsistent(ExportError):
    """The database's signatures do not lead to the root the export would publish."""


@dataclass(frozen=True, slots=True)
class ExportSummary:
    directory: Path
    runs: int
    batches: int
    records: int
    keys: int


def batch_root_for_export(batch: BatchToExport, tree: CompactTree) -> bytes:
    """The root a batch's records' proofs lead to in the export: the tree of its signatures
    as read here (kernel.merkle's record_leaf, in record id order), which must be the root
    the batch keeps (`signing_batch.merkle_root`, stored with its signatures). An export
    never publishes a root the database does not hold: a mismatch means the signatures or
    the root were changed after the store, which `manage.py audit` names. A batch signed
    before roots existed keeps none; its tree's root is published (the audit notes it)."""
    root = tree.build()
    if batch.merkle_root is not None and batch.merkle_root != root:
        raise ExportInconsistent(
            f"batch {batch.id}: its signatures do not lead to the root it keeps"
            " (run manage.py audit)"
        )
    return root


def run_root_for_export(run: RunToExport, batch_leaves: list[bytes]) -> bytes:
    """The root over a run's exported batches (kernel.merkle.batch_leaf, in seq order),
    which for a completed run must be the root it keeps (`signing_signingrun.merkle_root`,
    set as it completed, over all its batches: all signed, so all exported). Other runs
    keep none: their root covers the batches they signed."""
    root = merkle.root(batch_leaves)
    if run.merkle_root is not None and run.merkle_root != root:
        raise ExportInconsistent(
            f"run {run.id}: its batches do not lead to the root it keeps (run manage.py audit)"
        )
    return root


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """The runs and signed batches an export takes, read once at its start, and how many
    records they hold (a progress bar's total)."""

    runs: list[RunToExport]
    records: int


def plan_export(run_id: int | None = None) -> ExportPlan:
    runs = runs_to_export(run_id)
    return ExportPlan(runs=runs, records=signature_count(runs))


def write_export(
    out: Path, plan: ExportPlan, *, on_progress: Callable[[int], None] | None = None
) -> ExportSummary:
    """Export the plan's signed records into `out`, an empty or missing directory.
    `on_progress(n)` is told each time n more records are written."""
    return _Exporter(out, plan.runs, on_progress or (lambda n: None)).write()


def refuse_a_non_empty_directory(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportDirNotEmpty(f"{out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise ExportDirNotEmpty(
            f"{out} is not empty: an export never overwrites anything; give an empty or new "
            "directory"
        )


class _Exporter:
    def __init__(self, out: Path, runs: list[RunToExport], on_progress: Callable[[int], None]):
        self.out = out
        self.runs = runs
        self.on_progress = on_progress
        self.keys = {
            key.pk: key
            for key in SigningKey.objects.only("id", "kid", "algorithm", "public_key_pem")
        }
        self.keys_used: set[int] = set()
        self.records = 0

    def write(self) -> ExportSummary:
        refuse_a_non_empty_directory(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        with _partial(self.out, RECORDS) as records, _partial(self.out, JWKS) as jwks:
            records_hash, runs = self._write_records(records)
            jwks_hash = _write_json(jwks, self._jwks())
            manifest = self._manifest(runs, {RECORDS: records_hash, JWKS: jwks_hash})
            with _partial(self.out, MANIFEST) as manifest_file:
                _write_json(manifest_file, manifest, indent=2)
                # The data files first, the manifest last: the manifest's name appears
                # only once everything it describes is in place.
                records.commit()
                jwks.commit()
                manifest_file.commit()
        _sync_directory(self.out)
        return ExportSummary(
            directory=self.out,
            runs=len(self.runs),
            batches=sum(len(run.batches) for run in self.runs),
            records=self.records,
            keys=len(self.keys_used),
        )

    def _write_records(self, file: _PartialFile) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        digest, size = hashlib.sha256(), 0
        runs = []
        for run in self.runs:
            batches = []
            for batch in run.batches:
                tree = CompactTree()
                for record_id, signature in batch_signatures(batch):
                    tree.append(merkle.record_leaf(record_id, signature))
                root = batch_root_for_export(batch, tree)
                for line in self._record_lines(run, batch, tree):
                    digest.update(line)
                    size += len(line)
                    file.handle.write(line)
                batches.append(
                    {"id": batch.id, "seq": batch.seq, "records": len(tree), "root": root}
                )
            runs.append(self._run_entry(run, batches))
        return {"sha256": digest.hexdigest(), "bytes": size}, runs

    def _record_lines(
        self, run: RunToExport, batch: BatchToExport, tree: CompactTree
    ) -> Iterator[bytes]:
        written = 0
        for index, row in enumerate(batch_signed_rows(batch)):
            # Read twice, so checked twice: the same records, in the same order, with the
            # same signatures (append-only tables make this a formality; it is cheap).
            leaf = merkle.record_leaf(row.record_id, row.signature)
            if index >= len(tree) or leaf != tree.leaf(index):
                raise ExportInconsistent(f"batch {batch.id} changed while it was exported")
            key = self.keys[row.key_id]
            self.keys_used.add(row.key_id)
            line = {
                "id": row.record_id,
                "payload": row.payload,
                "signature": base64.b64encode(row.signature).decode("ascii"),
                "kid": key.kid,
                "algorithm": key.algorithm,
                "signed_at": _timestamp(row.signed_at),
                "batch": {"id": batch.id, "seq": batch.seq, "run": run.id},
                "proof": {"index": index, "path": [node.hex() for node in tree.path(index)]},
            }
            yield (json.dumps(line, separators=(",", ":")) + "\n").encode("ascii")
            written += 1
            self.records += 1
            if written % 1000 == 0:
                self.on_progress(1000)
        if written != len(tree):
            raise ExportInconsistent(f"batch {batch.id} changed while it was exported")
        self.on_progress(written % 1000)

    def _run_entry(self, run: RunToExport, batches: list[dict[str, Any]]) -> dict[str, Any]:
        leaves = [merkle.batch_leaf(batch["seq"], batch["root"]) for batch in batches]
        root = run_root_for_export(run, leaves)
        for batch, path in zip(batches, merkle.inclusion_proofs(leaves), strict=True):
            batch["root"] = batch["root"].hex()
            batch["path"] = [node.hex() for node in path]
        return {
            "id": run.id,
            "status": run.status,
            "batch_size": run.batch_size,
            "batch_count": len(batches),
            "records": sum(batch["records"] for batch in batches),
            "root": root.hex(),
            "batches": batches,
            "checkpoints": [self._checkpoint_entry(checkpoint) for checkpoint in run.checkpoints],
        }

    def _checkpoint_entry(self, checkpoint: CheckpointToExport) -> dict[str, Any]:
        """A follow run's checkpoint, its key in jwks.json like the records' keys."""
        key = self.keys[checkpoint.key_id]
        self.keys_used.add(checkpoint.key_id)
        return {
            "batches": checkpoint.batches,
            "root": checkpoint.merkle_root.hex(),
            "kid": key.kid,
            "algorithm": key.algorithm,
            "signature": base64.b64encode(checkpoint.signature).decode("ascii"),
            "signed_at": _timestamp(checkpoint.signed_at),
        }

    def _jwks(self) -> dict[str, Any]:
        used = sorted(self.keys_used, key=lambda key_id: self.keys[key_id].kid)
        return {
            "keys": [
                crypto.public_jwk(
                    crypto.load_public_key(self.keys[key_id].public_key_pem), self.keys[key_id].kid
                )
                for key_id in used
            ]
        }

    def _manifest(self, runs: list[dict[str, Any]], files: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_at": _timestamp(datetime.now(UTC)),
            "signing_input": 'UTF-8 of "sig-v1\\n" + str(id) + "\\n" + payload',
            "checkpoint_input": (
                'ASCII of "ckpt-v1\\n" + str(run id) + "\\n" + str(batches) + "\\n" + '
                "the root in lowercase hex: a follow run's first `batches` batches have it"
            ),
            "merkle": (
                "RFC 6962 hashing. A batch's leaves: SHA-256(0x00 || record id as 8 bytes "
                "big-endian || signature), in record id order; a run's leaves: "
                "SHA-256(0x00 || batch seq as 8 bytes big-endian || batch root), in seq order. "
                "A record's proof: its index and path in its batch's tree; a batch's: its "
                "place in its run's batches and its path in the run's tree."
            ),
            "files": files,
            "counts": {
                "runs": len(runs),
                "batches": sum(run["batch_count"] for run in runs),
                "records": self.records,
                "keys": len(self.keys_used),
            },
            "runs": runs,
        }


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _write_json(
    file: _PartialFile, document: dict[str, Any], *, indent: int | None = None
) -> dict[str, Any]:
    data = (json.dumps(document, indent=indent) + "\n").encode("ascii")
    file.handle.write(data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _sync_directory(directory: Path) -> None:
    """Make the renames durable: a crash after this leaves the whole export, not a part."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _PartialFile:
    """A file written under a hidden temporary name in its directory; commit() syncs it and
    gives it its own name, which it only ever has complete."""

    def __init__(self, directory: Path, name: str) -> None:
        self.path = directory / name
        descriptor, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{name}.", suffix=PARTIAL_SUFFIX
        )
        self.temporary = Path(temporary)
        self.handle: IO[bytes] = os.fdopen(descriptor, "wb", buffering=1 << 20)
        self.committed = False

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        # A hard link, not a rename: it fails where a file of that name appeared since the
        # directory was found empty, so nothing is ever overwritten, even then.
        try:
            os.link(self.temporary, self.path)
        except FileExistsError:
            raise ExportDirNotEmpty(
                f"{self.path} appeared while exporting: not overwritten"
            ) from None
        self.temporary.unlink()
        self.committed = True

    def discard(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)


@contextmanager
def _partial(directory: Path, name: str) -> Iterator[_PartialFile]:
    file = _PartialFile(directory, name)
    try:
        yield file
    finally:
        if not file.committed:
            file.discard()
