"""The Pythons the project supports are named in five places that must agree, and `make`
refuses any other interpreter before it builds anything.

The part under test in the last three tests is the Makefile's `install` recipe; a stand-in
interpreter (a shell script answering the recipe's two questions) replaces a real one where a
real one would cost a full install, or where no Python 3.10 is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def supported() -> list[str]:
    """The minor versions requires-python accepts, oldest first."""
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(30) if f"3.{minor}.0" in spec]


def make_install(
    python: str | Path | None, venv: Path, *, path_first: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`make install` with this interpreter (None: PYTHON not given) and venv, outside any make
    that runs the tests; `path_first` goes first on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON"}
    }
    if path_first:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    python_given = [] if python is None else [f"PYTHON={python}"]
    return subprocess.run(
        ["make", "--no-print-directory", "-C", ROOT, "install", *python_given, f"VENV={venv}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def stand_in_python(
    folder: Path, version: str, *, name: str | None = None, pip_fails: bool = False
) -> Path:
    """A script that says it is Python `version` and makes a venv whose pip records its calls
    (and then fails, with `pip_fails`, as an install cut off by the network would)."""
    script = folder / (name or f"python{version}")
    pip_exit = 1 if pip_fails else 0
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -c ]; then echo "{version} $0"; exit 0; fi\n'
        'if [ "$1 $2" = "-m venv" ]; then\n'
        '    mkdir -p "$3/bin"\n'
        '    printf \'#!/bin/sh\\necho "$*" >> "%s/pip-calls"\\nexit %s\\n\' "$3" '
        f'{pip_exit} > "$3/bin/pip"\n'
        '    chmod +x "$3/bin/pip"; exit 0\n'
        "fi\n"
        "exit 2\n"
    )
    script.chmod(0o755)
    return script


def test_requires_python_accepts_exactly_3_11_to_3_13() -> None:
    assert supported() == ["3.11", "3.12", "3.13"]


def test_classifiers_name_the_versions_requires_python_accepts() -> None:
    classifiers = PYPROJECT["project"]["classifiers"]
    named = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".* :: 3\.\d+", c)]
    assert named == supported()


def test_the_makefile_checks_for_the_versions_requires_python_accepts() -> None:
    line = re.search(r"^PYTHON_VERSIONS := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert line, "no PYTHON_VERSIONS in the Makefile"
    assert line[1].split() == supported()


def test_the_readme_names_the_versions_requires_python_accepts() -> None:
    *older, newest = supported()
    assert f"Python {', '.join(older)} or {newest}" in (ROOT / "README.md").read_text()


def test_ruff_targets_the_oldest_supported_version() -> None:
    assert PYPROJECT["tool"]["ruff"]["target-version"] == "py" + supported()[0].replace(".", "")


def test_these_tests_run_on_a_supported_python() -> None:
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in supported()


def python_3_10(folder: Path) -> Path:
    """A real Python 3.10 when one is installed (on PATH or in pyenv), else a stand-in."""
    pyenv = shutil.which("pyenv")
    candidates = [shutil.which("python3.10")]
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        candidates += sorted(Path(root.stdout.strip()).glob("versions/3.10*/bin/python3.10"))
    for candidate in filter(None, candidates):
        answer = subprocess.run([candidate, "--version"], capture_output=True, check=False)
        if answer.returncode == 0:
            return Path(candidate)
    return stand_in_python(folder, "3.10.4")


def test_make_refuses_python_3_10_in_one_line_before_building_anything(tmp_path: Path) -> None:
    python = python_3_10(tmp_path)

    result = make_install(python, tmp_path / "venv")

    assert result.returncode != 0
    refusal = [line for line in result.stderr.splitlines() if "does not support" in line]
    assert len(refusal) == 1, result.stderr
    assert f"PYTHON={python} is Python 3.10." in refusal[0]
    assert "use Python 3.11 to 3.13" in refusal[0]
    assert not (tmp_path / "venv").exists()


def test_make_names_an_interpreter_that_does_not_run(tmp_path: Path) -> None:
    result = make_install(tmp_path / "no-such-python", tmp_path / "venv")

    assert result.returncode != 0
    assert f"PYTHON={tmp_path / 'no-such-python'} does not run" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_venv_of_another_interpreter_is_removed_and_built_again(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").write_text("3.11.7 /usr/bin/python3.11\n")
    (venv / "left-over").touch()
    python = stand_in_python(tmp_path, "3.12.99")

    rebuilt = make_install(python, venv)

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (
        f"{venv} was built with Python 3.11.7 /usr/bin/python3.11, not 3.12.99 {python}: "
        "removing it and building it again"
    ) in rebuilt.stdout
    assert not (venv / "left-over").exists()
    assert (venv / ".installed").read_text() == f"3.12.99 {python}\n"
    assert (venv / "pip-calls").read_text().splitlines() == [
        "install --disable-pip-version-check -c constraints.txt -e .[dev]"
    ]


def test_a_venv_of_the_same_interpreter_is_kept(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = stand_in_python(tmp_path, "3.13.0")
    assert make_install(python, venv).returncode == 0

    again = make_install(python, venv)

    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert len((venv / "pip-calls").read_text().splitlines()) == 1


def test_without_python_given_a_venv_keeps_the_interpreter_it_was_built_with(tmp_path):
    # Given a venv built with PYTHON=python3.12, and a python3 on PATH that is 3.11
    venv = tmp_path / "venv"
    built_with = stand_in_python(tmp_path, "3.12.99")
    assert make_install(built_with, venv).returncode == 0
    default = tmp_path / "bin"
    default.mkdir()
    stand_in_python(default, "3.11.99", name="python3")

    # When make runs again without PYTHON
    again = make_install(None, venv, path_first=default)

    # Then the venv stays as it was built
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert (venv / ".installed").read_text() == f"3.12.99 {built_with}\n"
    assert len((venv / "pip-calls").read_text().splitlines()) == 1


def test_without_python_given_a_venv_whose_interpreter_is_gone_is_built_again(tmp_path):
    # Given a venv whose interpreter was removed (an upgrade), and python3 on PATH
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").write_text(f"3.12.1 {tmp_path / 'removed' / 'python3.12'}\n")
    default = tmp_path / "bin"
    default.mkdir()
    python3 = stand_in_python(default, "3.13.99", name="python3")

    again = make_install(None, venv, path_first=default)

    assert again.returncode == 0, again.stderr
    assert "removing it and building it again" in again.stdout
    assert (venv / ".installed").read_text() == f"3.13.99 {python3}\n"


@pytest.mark.parametrize("version", ["2.7.18", "3.14.0"])
def test_make_refuses_pythons_older_or_newer_than_supported(tmp_path: Path, version: str) -> None:
    result = make_install(stand_in_python(tmp_path, version), tmp_path / "venv")

    assert result.returncode != 0
    assert f"is Python {version} " in result.stderr
    assert not (tmp_path / "venv").exists()


def test_a_venv_whose_install_failed_is_built_again_by_the_next_make(tmp_path):
    # Given an install that failed half-way (make demo PYTHON=python3.12 cut off, say)
    venv = tmp_path / "venv"
    failed = make_install(stand_in_python(tmp_path, "3.12.99", pip_fails=True), venv)
    assert failed.returncode != 0
    assert (venv / "pip-calls").exists()
    assert not (venv / ".installed").exists()

    # When make runs again with another interpreter (the obvious retry: PYTHON=python3.11)
    python = stand_in_python(tmp_path, "3.11.99")
    again = make_install(python, venv)

    # Then it says why, removes the half-built venv and builds it with that interpreter
    assert again.returncode == 0, again.stderr
    assert (
        f"{venv} holds no finished install (one failed or was stopped): removing it and "
        f"building it again with Python 3.11.99 {python}"
    ) in again.stdout
    assert (venv / ".installed").read_text() == f"3.11.99 {python}\n"
    assert len((venv / "pip-calls").read_text().splitlines()) == 1
