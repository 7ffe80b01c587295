"""manage.py export_signature where it cannot write: a file in the way, files it would
overwrite, a path the system refuses. Each is one line naming the path, never a traceback.
(That what it writes verifies with openssl: test_commands.py.)"""

from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from records.models import Signature
from tests.integration.factories import cast_of, sign_leased
from tests.support import manage

WRITTEN = ("input.bin", "signature.bin", "public.pem")


@pytest.fixture
def signed_ids(db) -> list[int]:
    """Two records signed, as a worker signs them."""
    cast = cast_of(records=4, keys=1, batch_size=2)
    sign_leased(cast.lease)
    return list(Signature.objects.order_by("record_id").values_list("record_id", flat=True))


def test_a_file_where_the_folder_should_be_is_one_line_with_exit_2(tmp_path):
    in_the_way = tmp_path / "f"
    in_the_way.write_text("mine")

    refused = manage(None, "export_signature", "1", "--out", str(in_the_way))

    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"CommandError: {in_the_way} is a file, not a folder: give a folder to write into"
    ]
    assert in_the_way.read_text() == "mine"


def test_files_of_the_same_name_are_kept_unless_forced(signed_ids, tmp_path):
    first, second = signed_ids
    call_command("export_signature", first, out=tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in WRITTEN}

    held = r"already holds input\.bin, signature\.bin, public\.pem: give another folder"
    with pytest.raises(CommandError, match=held):
        call_command("export_signature", second, out=tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in WRITTEN} == before

    call_command("export_signature", second, out=tmp_path, force=True)
    assert (tmp_path / "input.bin").read_bytes() != before["input.bin"]
    assert (tmp_path / "input.bin").read_bytes().startswith(f"sig-v1\n{second}\n".encode())


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("/proc/nope", "No such file or directory"),
        # A parent that is a file: the folder cannot be made under it.
        ("{tmp}/file/sub", "Not a directory"),
    ],
)
def test_a_path_the_system_refuses_is_named_with_its_reason(signed_ids, tmp_path, out, reason):
    (tmp_path / "file").write_text("")
    path = Path(out.format(tmp=tmp_path))

    with pytest.raises(CommandError) as refused:
        call_command("export_signature", signed_ids[0], out=path)

    assert str(refused.value) == f"cannot write {path}: {reason}"
