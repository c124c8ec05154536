"""Atomic writes: complete files only, with the mode the user's umask gives any new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from genae.errors import GenaeError
from genae.io import atomic_path, write_json_atomic, write_text_atomic


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_umask_mode_not_mkstemps_0600(tmp_path, umask_022):
    write_text_atomic(tmp_path / "a.txt", "hello")
    write_json_atomic(tmp_path / "b.json", {"x": 1})
    with atomic_path(tmp_path / "c.bin") as tmp:
        tmp.write_bytes(b"\x00\x01")
    for name in ("a.txt", "b.json", "c.bin"):
        assert mode_of(tmp_path / name) == 0o644, name


def test_a_failed_write_leaves_neither_the_target_nor_a_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_an_unwritable_directory_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(GenaeError, match="cannot write"):
        write_text_atomic(blocker / "x.txt", "no")


def test_every_file_of_a_run_is_readable_by_others_under_umask_022(tmp_path, umask_022):
    from genae.api import fit
    from genae.data.sources import load_dataset

    run_dir = tmp_path / "run"
    fit(
        "vae",
        model_config={"hidden": [16], "latent_dim": 2},
        train_config={"epochs": 1, "progress": False, "snapshot_epochs": [1]},
        data=load_dataset("digits"),
        run_dir=run_dir,
    )
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".png" for p in files)
    assert any(p.name == "model.safetensors" for p in files)
    for path in files:
        assert mode_of(path) == 0o644, path
