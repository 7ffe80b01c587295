"""What a user of the generated client writes, run by test_generated_client.py with the tools
venv's Python (the generated package `signing_api` on PYTHONPATH; no Django here).

Arguments: the server's base URL, a staff token, a record id. Prints what it saw as JSON.
The client raises on any status its schema does not document."""

import base64
import json
import sys
import time

from signing_api import AuthenticatedClient
from signing_api.api.api import (
    api_keys_list,
    api_runs_create,
    api_runs_retrieve,
    api_verify_create,
)
from signing_api.models import (
    Errors,
    Run,
    RunCreateRequest,
    VerifyMessageRequest,
    VerifyRecordRequest,
    VerifyResult,
)

FINISHED = {"completed", "failed", "cancelled"}


def main(base_url: str, token: str, record_id: int) -> dict:
    client = AuthenticatedClient(
        base_url=base_url, token=token, prefix="Token", raise_on_unexpected_status=True
    )
    run = api_runs_create.sync(client=client, body=RunCreateRequest(batch_size=50))
    assert isinstance(run, Run), run
    progress_read = 0
    deadline = time.monotonic() + 120
    while run.status.value not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.1)  # a user's polling interval
        run = api_runs_retrieve.sync(client=client, id=run.id)
        assert isinstance(run, Run), run
        progress_read += 1
    verdict = api_verify_create.sync(client=client, body=VerifyRecordRequest(record_id=record_id))
    assert isinstance(verdict, VerifyResult), verdict
    kid = api_keys_list.sync(client=client, limit=1).results[0].kid
    forged = api_verify_create.sync(
        client=client,
        body=VerifyMessageRequest(
            kid=kid, message="forged", signature=base64.b64encode(bytes(64)).decode()
        ),
    )
    missing = api_runs_retrieve.sync(client=client, id=10**17)
    return {
        "status": run.status.value,
        "total_records": run.progress.total_records,
        "signed_records": run.progress.signed_records,
        "progress_read": progress_read,
        "record_valid": verdict.valid,
        "forged_valid": forged.valid,
        "missing_run": {
            "type": type(missing).__name__,
            "detail": missing.errors["detail"] if isinstance(missing, Errors) else None,
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
