"""Faults and untrusted files: kills at random moments, kills inside a checkpoint write, full or
unwritable disks, foreign and pickled checkpoints, and property-based fuzzing of the readers."""

import errno
import gzip
import io
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from faults import run_genae
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from genae.cli import main
from genae.config import TrainConfig, from_mapping
from genae.data.idx import read_idx
from genae.errors import CheckpointError, ConfigError, DataError, GenaeError
from genae.models.vae import VAEConfig
from genae.training.checkpoint import load_checkpoint
from genae.training.rundir import load

ARGS = [
    "train",
    "vae",
    "--dataset",
    "digits",
    "--epochs",
    "3",
    "--hidden",
    "32",
    "--latent-dim",
    "3",
    "--batch-size",
    "100",
    "--checkpoint-every",
    "3",
    "--no-progress",
    "--snapshot-epochs",
    "3",
]
QUICK = [*ARGS[:4], *ARGS[6:10], "--no-progress", "--snapshot-epochs", "1"]


def run(tmp_path: Path, out: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return run_genae(tmp_path, [*ARGS, "--out", str(out), *extra], **env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("reference")
    result = run(base, base / "run")
    assert result.returncode == 0, result.stderr
    return load_file(str(base / "run" / "model.safetensors"))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ten_kills_at_random_moments_still_end_on_the_same_weights(tmp_path, reference):
    """45 training steps, checkpoints every 3; SIGKILL at 10 random batches, resuming after
    each, then a last resume to the end: the weights equal the uninterrupted run's."""
    out = tmp_path / "run"
    rng = random.Random(7)
    for _ in range(10):
        # before the first checkpoint there is nothing to resume: start again
        again = "--resume" if (out / "checkpoint.safetensors").exists() else "--force"
        result = run(tmp_path, out, again, FAULT_AT_BATCH=str(rng.randint(1, 8)))
        assert result.returncode == -9, result.stderr
    finished = run(tmp_path, out, "--resume")
    assert finished.returncode == 0, finished.stderr
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert same(load_file(str(out / "model.safetensors")), reference)


def test_kill_inside_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, reference):
    out = tmp_path / "run"
    killed = run(tmp_path, out, FAULT_IN_CHECKPOINT_WRITE="3")
    assert killed.returncode == -9
    _, meta = load_checkpoint(out / "checkpoint.safetensors")  # the second write, intact
    assert meta["state"]["global_step"] == 6
    assert list(out.glob(".*.tmp")), "the interrupted write leaves only a temporary file"
    resumed = run(tmp_path, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.rglob(".*.tmp"))
    assert same(load_file(str(out / "model.safetensors")), reference)


@pytest.fixture()
def finished_run(tmp_path, capsys) -> Path:
    out = tmp_path / "done"
    code = main([*QUICK, "--epochs", "1", "--out", str(out)])
    capsys.readouterr()
    assert code == 0
    return out


def one_line_error(capsys, argv) -> str:
    """The one error line of a failed command, after the run's progress lines (its heading and
    epoch lines) when training had started."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    progress = [line for line in lines[:-1] if line.startswith(("== ", "   ", "epoch "))]
    assert progress == lines[:-1] and "Traceback" not in err, err
    return lines[-1]


def test_disk_full_during_a_checkpoint_is_a_clear_error_and_keeps_the_old_one(
    finished_run, capsys, monkeypatch
):
    names = ("checkpoint.safetensors", "model.safetensors")
    before = {n: (finished_run / n).read_bytes() for n in names}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("genae.training.checkpoint.save_file", full)
    err = one_line_error(capsys, [*QUICK, "--epochs", "2", "--out", str(finished_run), "--resume"])
    assert "No space left on device" in err and ".safetensors: cannot write" in err
    assert {n: (finished_run / n).read_bytes() for n in names} == before
    assert not list(finished_run.glob(".*.tmp"))


def test_unwritable_output_directory_is_a_clear_error(tmp_path, capsys, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("genae.io.tempfile.mkstemp", denied)
    err = one_line_error(capsys, [*QUICK, "--out", str(tmp_path / "r")])
    assert "Permission denied" in err


def test_truncated_checkpoint_is_refused(finished_run, capsys):
    path = finished_run / "checkpoint.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = one_line_error(capsys, [*QUICK, "--epochs", "2", "--out", str(finished_run), "--resume"])
    assert "checkpoint.safetensors" in err


def test_pickled_checkpoint_is_refused_without_running_it(finished_run, capsys, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"model": Exploit()}, buffer)
    (finished_run / "checkpoint.safetensors").write_bytes(buffer.getvalue())
    (finished_run / "model.safetensors").write_bytes(buffer.getvalue())
    err = one_line_error(capsys, [*QUICK, "--epochs", "2", "--out", str(finished_run), "--resume"])
    assert "safetensors" in err
    with pytest.raises(CheckpointError, match="safetensors"):
        load(finished_run)
    assert not marker.exists(), "loading must never unpickle"


def test_checkpoint_from_another_model_configuration_is_refused(finished_run, capsys, tmp_path):
    other = tmp_path / "other"
    assert main([*QUICK, "--epochs", "1", "--hidden", "16", "--out", str(other)]) == 0
    capsys.readouterr()
    (finished_run / "checkpoint.safetensors").write_bytes(
        (other / "checkpoint.safetensors").read_bytes()
    )
    err = one_line_error(capsys, [*QUICK, "--epochs", "2", "--out", str(finished_run), "--resume"])
    assert "different model or configuration" in err


def test_run_from_another_genae_format_is_refused(finished_run, capsys):
    config_path = finished_run / "config.json"
    config = json.loads(config_path.read_text())
    config["run_format"], config["genae_version"] = 99, "9.0.0"
    config_path.write_text(json.dumps(config))
    err = one_line_error(capsys, ["evaluate", str(finished_run)])
    assert "run format 99" in err and "9.0.0" in err


def test_checkpoint_of_another_format_is_refused(finished_run):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = finished_run / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["genae"])
    tensors = load_file(str(path))
    meta["format"], meta["genae_version"] = "genae-checkpoint-7", "7.0"
    save_file(tensors, str(path), metadata={"genae": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="genae-checkpoint-7.*genae 7.0"):
        load_checkpoint(path)


# --- property-based: random bytes and random configs fail only with genae's own errors ------
def idx_header(ndim: int, dims: list[int]) -> bytes:
    return b"\x00\x00\x08" + bytes([ndim]) + b"".join(struct.pack(">I", d) for d in dims)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.binary(max_size=300),
    compress=st.booleans(),
    headed=st.booleans(),
    dims=st.lists(st.integers(0, 40), min_size=1, max_size=3),
)
def test_random_idx_bytes_never_crash_the_reader(tmp_path, payload, compress, headed, dims):
    data = (idx_header(len(dims), dims) + payload) if headed else payload
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        array = read_idx(path)
    except DataError as exc:
        assert str(path) in str(exc) or path.name in str(exc)
        assert "\n" not in str(exc)
    else:
        assert list(array.shape) == dims


CONFIG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_subnormal=False),
    st.text(max_size=12),
    st.lists(st.integers(-3, 600), max_size=4),
)
TRAIN_KEYS = st.sampled_from([*TrainConfig.__dataclass_fields__, "epoch", "lr_rate", "x"])
MODEL_KEYS = st.sampled_from([*VAEConfig.__dataclass_fields__, "latent", "hiden"])


@settings(max_examples=300, deadline=None)
@given(
    train=st.dictionaries(TRAIN_KEYS, CONFIG_VALUES, max_size=4),
    model=st.dictionaries(MODEL_KEYS, CONFIG_VALUES, max_size=4),
)
def test_random_configs_fail_only_with_config_errors(train, model):
    for cls, values in ((TrainConfig, train), (VAEConfig, model)):
        try:
            from_mapping(cls, values)
        except ConfigError as exc:
            assert "\n" not in str(exc)
        except GenaeError as exc:  # pragma: no cover - any other library error is a bug here
            pytest.fail(f"unexpected {type(exc).__name__}: {exc}")


# --- image folders and CelebA attribute files -------------------------------------------------
def make_folder(root: Path, n: int = 6, mode: str = "RGB", size=(12, 12)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for i in range(n):
        Image.new(mode, size, 40 * i % 255).save(root / f"{i:02d}.png")
    return root


@pytest.fixture()
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))


def test_empty_image_folder_is_refused(tmp_path, image_cache):
    from genae.data.sources import load_dataset

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="expected at least 2 images"):
        load_dataset("folder", tmp_path / "empty")


def test_folder_of_non_image_files_is_refused_and_strays_are_ignored(tmp_path, image_cache):
    from genae.data.sources import load_dataset

    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (junk / "data.csv.bak").write_text("1,2")
    with pytest.raises(DataError, match="expected at least 2 images"):
        load_dataset("folder", junk)
    make_folder(junk, n=4)
    data = load_dataset("folder", junk, image_size=8)
    assert len(data.train) + len(data.test.unseal()) == 4  # the text files are not images


def test_corrupt_png_in_a_folder_is_named(tmp_path, image_cache):
    from genae.data.sources import load_dataset

    folder = make_folder(tmp_path / "pics", n=5)
    (folder / "03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError, match=r"03\.png"):
        load_dataset("folder", folder, image_size=8)
    data = load_dataset("folder", folder, image_size=8, skip_bad_images=True)
    assert len(data.train) + len(data.test.unseal()) == 4 and "skipped 1" in data.notes[0]


def test_mixed_sizes_and_modes_are_converted_to_one_shape(tmp_path, image_cache):
    """Documented: centre-cropped, resized, and converted to the first image's colour mode."""
    from PIL import Image

    from genae.data.sources import load_dataset

    folder = make_folder(tmp_path / "mixed", n=2, mode="RGB", size=(16, 16))
    Image.new("RGBA", (30, 20), (10, 20, 30, 128)).save(folder / "10.png")
    Image.new("P", (9, 14), 3).save(folder / "11.png")
    Image.new("L", (40, 40), 200).save(folder / "12.png")
    data = load_dataset("folder", folder, image_size=8)
    images = torch.cat([data.train.images, data.test.unseal().images])
    assert images.shape[1:] == (3, 8, 8) and len(images) == 5


def test_celeba_attribute_values_and_extra_columns_are_checked(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_image_data import make_celeba

    from genae.data.sources import load_dataset

    monkeypatch.setenv("GENAE_DATA_DIR", str(tmp_path / "cache"))
    root = tmp_path / "celeba"
    make_celeba(root)
    path = root / "list_attr_celeba.txt"
    good = path.read_text().splitlines()
    bad_value = list(good)
    bad_value[4] = bad_value[4].rsplit(" ", 1)[0] + " 2"
    path.write_text("\n".join(bad_value) + "\n")
    expected = r"list_attr_celeba.txt:5: attribute Young is .2., expected 1 or -1"
    with pytest.raises(DataError, match=expected):
        load_dataset("celeba", root, image_size=8, attributes=["Male", "Smiling", "Young"])
    extra = list(good)
    extra[4] = extra[4] + " 1"
    path.write_text("\n".join(extra) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:5: expected an image name and"):
        load_dataset("celeba", root, image_size=8, attributes=["Male"])


@pytest.mark.parametrize("field", ["likelihood", "activation"])
def test_a_newline_in_a_choice_field_stays_one_line_in_the_error(field):
    # Found by the random-config test above: a value holding a newline split the message.
    with pytest.raises(ConfigError) as caught:
        from_mapping(VAEConfig, {field: "bad\nvalue"})
    assert "\n" not in str(caught.value) and field in str(caught.value)
