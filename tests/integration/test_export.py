"""manage.py export, then tools/verify_export.py: an export verifies, and each kind of
tampering fails naming the record, file, batch or run (issue 18, points 4 and 5)."""

from __future__ import annotations

import base64
import io
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from kernel import crypto, merkle
from keyring import sealing
from keyring.services import create_keys
from records.models import Signature
from records.services import random_payloads
from signing.exports import export as exports
from signing.models import Batch, SigningRun
from signing.runs.dispatch import cancel_run, finish_run, plan_run
from signing.runs.seeding import load_records
from tests.conftest import seed
from tests.integration.factories import lease_batch, sign_and_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]

ROOT = Path(__file__).resolve().parent.parent.parent
VERIFIER = ROOT / "tools" / "verify_export.py"
ODD_PAYLOADS = ['a "quoted"\nline\\with\ttabs', "ünïcödé ✓ 𝄞", " ", '{"id": 1}']


def sign_batches(run, *, leave_pending: int = 0) -> None:
    batches = list(run.batches.order_by("seq"))
    for batch in batches[: len(batches) - leave_pending]:
        sign_and_release(lease_batch(batch).id)


@pytest.fixture
def signed_database():
    """Two runs, keys of both algorithms: run 1 (batches of 7) signed whole, run 2 (batches
    of 5) cancelled with its last batch unsigned, which the export leaves out."""
    seed(records=26, keys=2)
    create_keys(count=2, algorithm=crypto.ECDSA_P256_SHA256, kek=sealing.kek_from_environment())
    load_records(ODD_PAYLOADS)
    first = plan_run(batch_size=7)
    sign_batches(first)
    assert finish_run(first.pk)
    load_records(random_payloads(12, rng=random.Random(7)))
    second = plan_run(batch_size=5)
    sign_batches(second, leave_pending=1)
    assert cancel_run(second.pk)
    return first, second


def export_to(out: Path, *args: str) -> str:
    printed = io.StringIO()
    call_command("export", "--out", str(out), *args, stdout=printed)
    return printed.getvalue()


def verify(
    directory: Path, *args: str, python: str = sys.executable
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, str(VERIFIER), str(directory), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lines_of(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "records.jsonl").read_text().splitlines()]


def write_lines(directory: Path, lines: list[dict]) -> None:
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    (directory / "records.jsonl").write_text(text)


@pytest.fixture
def exported(signed_database, tmp_path) -> Path:
    out = tmp_path / "export"
    export_to(out)
    return out


def test_an_export_verifies_and_holds_every_signed_record_once(exported, signed_database):
    first, second = signed_database

    result = verify(exported)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK ")
    assert "40 records, 7 batches, 2 runs, 4 keys" in result.stdout  # 30 + 10 of 42
    lines = lines_of(exported)
    assert [line["id"] for line in lines] == list(
        Signature.objects.filter(batch__status="signed")
        .order_by("batch__run_id", "batch__seq", "record_id")
        .values_list("record_id", flat=True)
    )
    assert len(lines) == 40
    assert {line["payload"] for line in lines} >= set(ODD_PAYLOADS)
    assert {line["algorithm"] for line in lines} == set(crypto.ALGORITHMS)
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["counts"] == {"runs": 2, "batches": 7, "records": 40, "keys": 4}
    runs = {run["id"]: run for run in manifest["runs"]}
    assert runs[second.pk]["batch_count"] == 2  # the unsigned third batch is left out
    assert [b["seq"] for b in runs[first.pk]["batches"]] == [1, 2, 3, 4, 5]
    jwks = json.loads((exported / "jwks.json").read_text())
    assert sorted(key["kty"] for key in jwks["keys"]) == ["EC", "EC", "OKP", "OKP"]


def test_the_roots_are_kernel_merkles_over_the_databases_signatures(exported, signed_database):
    first, _ = signed_database
    manifest = json.loads((exported / "manifest.json").read_text())
    run = next(run for run in manifest["runs"] if run["id"] == first.pk)
    batch_leaves = []
    for batch in Batch.objects.filter(run=first).order_by("seq"):
        signatures = Signature.objects.filter(batch=batch).order_by("record_id")
        root = merkle.root(
            [merkle.record_leaf(s.record_id, bytes(s.signature)) for s in signatures]
        )
        batch_leaves.append(merkle.batch_leaf(batch.seq, root))
        assert next(b for b in run["batches"] if b["id"] == batch.pk)["root"] == root.hex()
    assert run["root"] == merkle.root(batch_leaves).hex()


def test_the_published_roots_are_the_ones_the_database_keeps(exported, signed_database):
    first, _ = signed_database
    first.refresh_from_db()
    manifest = json.loads((exported / "manifest.json").read_text())
    run = next(run for run in manifest["runs"] if run["id"] == first.pk)
    assert run["root"] == bytes(first.merkle_root).hex()
    for batch in Batch.objects.filter(run=first):
        assert (
            next(b for b in run["batches"] if b["id"] == batch.pk)["root"]
            == bytes(batch.merkle_root).hex()
        )


@pytest.mark.parametrize("kept_by", ["batch", "run"])
def test_a_root_that_its_signatures_do_not_lead_to_is_never_published(
    signed_database, tmp_path, kept_by
):
    first, _ = signed_database
    batch = first.batches.order_by("seq").first()
    if kept_by == "batch":
        Batch.objects.filter(pk=batch.pk).update(merkle_root=b"\0" * 32)
        named = f"batch {batch.pk}"
    else:
        SigningRun.objects.filter(pk=first.pk).update(merkle_root=b"\0" * 32)
        named = f"run {first.pk}"
    with pytest.raises(CommandError, match=f"{named}: .* do not lead to the root it keeps"):
        export_to(tmp_path / "refused")
    assert list((tmp_path / "refused").iterdir()) == []


def test_batches_of_many_pages_are_exported_page_by_page(signed_database, tmp_path, monkeypatch):
    # Pages of 3 records: every batch (of 7 or 5) is read in several pages, twice.
    monkeypatch.setattr("signing.exports.selectors.PAGE_SIZE", 3)
    printed = export_to(tmp_path / "paged")
    assert "exported 40 records of 7 batches of 2 runs, signed by 4 keys" in printed
    assert verify(tmp_path / "paged").returncode == 0


def test_a_database_with_nothing_signed_exports_an_empty_export_that_verifies(tmp_path):
    seed(records=5, keys=1)
    plan_run(batch_size=5)  # planned, never signed
    printed = export_to(tmp_path / "empty")
    assert "exported 0 records of 0 batches of 1 run, signed by 0 keys" in printed
    assert (tmp_path / "empty" / "records.jsonl").read_bytes() == b""
    result = verify(tmp_path / "empty")
    assert result.returncode == 0, result.stdout
    assert "0 records, 0 batches, 1 run, 0 keys" in result.stdout


def test_one_run_is_exported_alone(signed_database, tmp_path):
    _, second = signed_database
    export_to(tmp_path / "one", "--run", str(second.pk))
    assert {line["batch"]["run"] for line in lines_of(tmp_path / "one")} == {second.pk}
    assert verify(tmp_path / "one").returncode == 0


def test_an_export_never_overwrites_a_directory_with_files(signed_database, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not empty"):
        export_to(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_unknown_run_is_a_usage_error(signed_database, tmp_path):
    with pytest.raises(CommandError, match="no run has id 999"):
        export_to(tmp_path / "x", "--run", "999")


def test_an_export_that_fails_halfway_leaves_no_manifest_and_no_file_under_its_name(
    signed_database, tmp_path, monkeypatch
):
    def broken(*args, **kwargs):
        raise exports.ExportInconsistent("batch 1 changed while it was exported")

    monkeypatch.setattr(exports._Exporter, "_jwks", broken)
    with pytest.raises(CommandError, match="changed"):
        export_to(tmp_path / "half")
    assert list((tmp_path / "half").iterdir()) == []


def test_a_file_that_appears_during_the_export_is_not_overwritten(
    signed_database, tmp_path, monkeypatch
):
    out = tmp_path / "raced"
    jwks = exports._Exporter._jwks

    def someone_writes_first(exporter):
        (out / "records.jsonl").write_text("mine")
        return jwks(exporter)

    monkeypatch.setattr(exports._Exporter, "_jwks", someone_writes_first)
    with pytest.raises(CommandError, match="appeared while exporting"):
        export_to(out)
    assert [p.name for p in out.iterdir()] == ["records.jsonl"]
    assert (out / "records.jsonl").read_text() == "mine"


# --- tampering: each fails, naming what is wrong -------------------------------------------
def assert_fails_naming(directory: Path, *expected: str) -> str:
    result = verify(directory)
    assert result.returncode == 1, result.stdout + result.stderr
    for text in expected:
        assert text in result.stdout, result.stdout
    return result.stdout


def test_a_flipped_signature_byte_names_its_record(exported):
    lines = lines_of(exported)
    signature = bytearray(base64.b64decode(lines[3]["signature"]))
    signature[10] ^= 1
    lines[3]["signature"] = base64.b64encode(signature).decode()
    write_lines(exported, lines)

    out = assert_fails_naming(
        exported,
        f"record {lines[3]['id']}: its signature does not verify",
        f"record {lines[3]['id']}: its proof does not lead to batch {lines[3]['batch']['id']}",
        "file records.jsonl: its SHA-256",
    )
    assert out.count("BAD record") == 2  # that record only: its signature and its proof


def test_a_dropped_line_names_its_batch_and_place(exported):
    lines = lines_of(exported)
    dropped = lines.pop(9)
    write_lines(exported, lines)

    assert_fails_naming(
        exported,
        f"batch {dropped['batch']['id']}: no valid record at place {dropped['proof']['index']} of",
        "file records.jsonl: its SHA-256",
        "file manifest.json: counts records 40, the export holds 39",
    )


def test_an_added_line_names_its_record(exported):
    lines = lines_of(exported)
    forged = {**lines[5], "id": 10_000, "payload": "forged"}
    write_lines(exported, [*lines, forged])

    assert_fails_naming(
        exported,
        "record 10000: its signature does not verify",
        "record 10000: its proof does not lead",
        "counts records 40, the export holds 41",
    )


def test_a_line_added_twice_names_its_record(exported):
    lines = lines_of(exported)
    write_lines(exported, [*lines, lines[0]])
    assert_fails_naming(exported, f"record {lines[0]['id']}: listed twice")


def test_two_swapped_proofs_name_both_records(exported):
    lines = lines_of(exported)
    lines[1]["proof"], lines[2]["proof"] = lines[2]["proof"], lines[1]["proof"]
    write_lines(exported, lines)

    assert_fails_naming(
        exported,
        f"record {lines[1]['id']}: its proof does not lead",
        f"record {lines[2]['id']}: its proof does not lead",
    )


def test_an_edited_payload_names_its_record(exported):
    lines = lines_of(exported)
    lines[7]["payload"] += "!"
    write_lines(exported, lines)
    out = assert_fails_naming(exported, f"record {lines[7]['id']}: its signature does not verify")
    assert "proof" not in out  # the leaf holds the signature, not the payload


def test_an_edited_run_root_names_the_run_and_its_batches(exported, signed_database):
    first, _ = signed_database
    manifest = json.loads((exported / "manifest.json").read_text())
    run = next(run for run in manifest["runs"] if run["id"] == first.pk)
    run["root"] = "00" * 32
    (exported / "manifest.json").write_text(json.dumps(manifest))

    assert_fails_naming(
        exported,
        f"run {first.pk}: its root is not the root over its batches' roots",
        f"batch {run['batches'][0]['id']}: its path does not lead to run {first.pk}'s root",
    )


def test_an_edited_batch_root_names_the_batch_and_its_records(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    batch = manifest["runs"][0]["batches"][1]
    batch["root"] = "ff" * 32
    (exported / "manifest.json").write_text(json.dumps(manifest))
    first_record = next(line for line in lines_of(exported) if line["batch"]["id"] == batch["id"])

    assert_fails_naming(
        exported,
        "its root is not the root over its batches' roots",
        f"record {first_record['id']}: its proof does not lead to batch {batch['id']}'s root",
    )


def test_a_missing_manifest_is_an_unfinished_export(exported):
    (exported / "manifest.json").unlink()
    assert_fails_naming(exported, "file manifest.json: missing")


def test_json_output_lists_each_problem(exported):
    lines = lines_of(exported)
    lines[0]["payload"] += "!"
    write_lines(exported, lines)
    result = verify(exported, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {
        "kind": "record",
        "name": str(lines[0]["id"]),
        "problem": next(p["problem"] for p in report["problems"] if p["kind"] == "record"),
    } in report["problems"]


# --- the openssl loop of the README ---------------------------------------------------------
def openssl_loop() -> str:
    """The README's shell block that verifies an export with openssl, as written."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    return next(block for block in blocks if "openssl pkeyutl" in block and "jwks.json" in block)


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("openssl", "jq", "xxd", "base64", "bash")),
    reason="needs openssl, jq, xxd and base64",
)
def test_the_documented_openssl_loop_agrees_with_the_verifier(exported):
    script = openssl_loop().replace("cd /tmp/export", f"cd {exported}")

    def run_loop() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=300, check=False
        )

    clean = run_loop()
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout == ""
    lines = lines_of(exported)
    assert {line["algorithm"] for line in lines} == set(crypto.ALGORITHMS)
    tampered = next(line for line in lines if line["algorithm"] == crypto.ECDSA_P256_SHA256)
    tampered["payload"] += "!"
    assert lines[0]["algorithm"] == crypto.ED25519
    lines[0]["payload"] = lines[0]["payload"][:-1]
    write_lines(exported, lines)
    assert sorted(run_loop().stdout.splitlines()) == sorted(
        [f"record {lines[0]['id']}: BAD signature", f"record {tampered['id']}: BAD signature"]
    )


# --- the verifier alone: a virtualenv with cryptography only -------------------------------
def cryptography_requirement() -> str:
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    return next(line.strip() for line in pins if line.lower().startswith("cryptography=="))


# What `cryptography` needs installed beside it (cffi, and cffi's pycparser), by the names
# they take in site-packages: copied from the project's venv when PyPI cannot be reached.
CRYPTOGRAPHY_AND_ITS_NEEDS = ("cryptography", "cffi", "_cffi_backend", "pycparser")


def site_packages(python: str) -> Path:
    found = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(found.stdout.strip())


def copy_cryptography_from_this_venv(python: str) -> None:
    """Offline: the project venv's own cryptography (the pinned version), and its needs."""
    source, target = site_packages(sys.executable), site_packages(python)
    for entry in source.iterdir():
        if entry.name.split("-")[0].split(".")[0] in CRYPTOGRAPHY_AND_ITS_NEEDS:
            if entry.is_dir():
                shutil.copytree(entry, target / entry.name)
            else:
                shutil.copy2(entry, target / entry.name)


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory) -> str:
    """A new virtualenv holding only `cryptography`, at the version constraints.txt pins:
    from PyPI, or copied from the project's venv when PyPI cannot be reached."""
    venv = tmp_path_factory.mktemp("verifier-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "--timeout",
            "20",
            cryptography_requirement(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        copy_cryptography_from_this_venv(python)
    version = subprocess.run(
        [python, "-c", "import cryptography; print(cryptography.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"cryptography=={version.stdout.strip()}" == cryptography_requirement()
    return python


def test_the_verifier_runs_with_only_cryptography_installed(exported, clean_python):
    listed = subprocess.run(
        [clean_python, "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = {package["name"].lower() for package in json.loads(listed.stdout)}
    assert "django" not in names
    assert names <= {"cryptography", "cffi", "pycparser", "pip", "setuptools"}, names

    assert verify(exported, python=clean_python).returncode == 0
    lines = lines_of(exported)
    lines[0]["payload"] += "!"
    write_lines(exported, lines)
    tampered = verify(exported, python=clean_python)
    assert tampered.returncode == 1
    assert f"record {lines[0]['id']}: its signature does not verify" in tampered.stdout
