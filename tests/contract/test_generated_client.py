"""The schema is valid OpenAPI by a standard validator, and a Python client generated from it
(openapi-python-client, in the tools venv) starts a run, follows its progress and verifies a
record against a live server with real workers: what a user of a generated client does."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from records.models import Record
from tests.conftest import seed

SCENARIO = Path(__file__).with_name("client_scenario.py")


@pytest.fixture
def schema_file(live_server, tmp_path) -> Path:
    path = tmp_path / "openapi.json"
    with urllib.request.urlopen(f"{live_server.url}/api/schema/?format=json") as response:
        path.write_bytes(response.read())
    return path


def test_the_schema_is_valid_openapi_by_openapi_spec_validator(schema_file, api_tool):
    schema = json.loads(schema_file.read_text())
    assert schema["openapi"].startswith("3.")
    checked = subprocess.run(
        [api_tool("openapi-spec-validator"), str(schema_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip().endswith(": OK")


def generate_client(schema_file: Path, into: Path, api_tool) -> None:
    config = into / "generator.json"
    config.write_text(
        json.dumps({"project_name_override": "signing-api", "package_name_override": "signing_api"})
    )
    generated = subprocess.run(
        [
            api_tool("openapi-python-client"),
            "generate",
            "--path",
            str(schema_file),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(into / "signing_api"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{Path(api_tool('ruff')).parent}:{os.environ['PATH']}"},
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "Warning" not in output, output  # every operation and schema generated whole


def test_a_generated_client_starts_a_run_follows_it_and_verifies_a_record(
    live_server, schema_file, tokens, start_workers, api_tool, tmp_path
):
    seed(records=300, keys=4)
    first_record = Record.objects.order_by("id").values_list("id", flat=True).first()
    start_workers(processes=1, threads=2)
    generate_client(schema_file, tmp_path, api_tool)
    scenario = subprocess.run(
        [
            api_tool("python"),
            str(SCENARIO),
            live_server.url,
            tokens["staff"],
            str(first_record),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        timeout=180,
    )
    assert scenario.returncode == 0, scenario.stdout + scenario.stderr
    seen = json.loads(scenario.stdout)
    assert seen["status"] == "completed"
    assert seen["signed_records"] == seen["total_records"] == 300
    assert seen["progress_read"] >= 1
    assert seen["record_valid"] is True
    assert seen["forged_valid"] is False
    assert seen["missing_run"] == {
        "type": "Errors",
        "detail": ["No SigningRun matches the given query."],
    }
