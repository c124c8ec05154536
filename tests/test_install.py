"""The installed package, imported the way a user's script imports it."""

from __future__ import annotations

import subprocess
import sys

from genae.version import __version__


def test_a_folder_named_genae_in_the_working_directory_does_not_shadow_the_package(tmp_path):
    # A clone of this repository is a folder named `genae` without an __init__.py: run from the
    # folder holding it, Python would import it as an empty namespace package if the installed
    # package were found by a finder that runs after the path search (a flat-layout editable
    # install). The src layout puts only src/ on the path, where the real package wins.
    (tmp_path / "genae" / "tests").mkdir(parents=True)
    (tmp_path / "genae" / "README.md").write_text("a clone\n")
    script = "import genae; print(genae.__version__); print(genae.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    version, location = result.stdout.split()
    assert version == __version__
    assert not location.startswith(str(tmp_path))


def test_python_dash_m_genae_runs_from_another_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "genae", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"genae {__version__}"
