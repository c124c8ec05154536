"""The `genae` command line, called in-process through `genae.cli.main`.

Every user error must end with exit code 2 and one line on stderr starting with
`genae: error:` that names what is wrong, never a traceback. The happy paths train tiny models on
the embedded 8x8 digits (two epochs, one hidden layer of 32, a 2-d latent), once per module.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genae.cli import main
from genae.commands import THREADS_HELP, model_summary
from genae.config import TrainConfig, field_types, option_types
from genae.data.download import IDX_FILES
from genae.data.idx import write_idx
from genae.models import MODELS
from genae.models.m2 import M2Config
from genae.version import __version__

TINY = (
    "--dataset",
    "digits",
    "--epochs",
    "2",
    "--hidden",
    "32",
    "--latent-dim",
    "2",
    "--no-progress",
)
METRIC_KEYS = {"epoch", "val_neg_elbo", "val_recon_mse", "val_kl"}


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class Result:
    code: int | str | None
    out: str
    err: str


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    """Run `genae ARGS` in-process; argparse's SystemExit counts as an exit code."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_user_error(result: Result, *fragments: str) -> str:
    """Exit 2, nothing on stdout, one `genae: error:` line on stderr holding every fragment."""
    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    line = lines[0]
    assert line.startswith("genae: error: "), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def read_config(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def grid_size(n: int, per_row: int, side: int = 8, padding: int = 2, scale: int = 2):
    """(width, height) of a sample grid PNG, following genae.viz.grids.tile and save_grid."""
    rows = math.ceil(n / per_row)
    return (
        scale * (per_row * (side + padding) + padding),
        scale * (rows * (side + padding) + padding),
    )


def write_fake_idx(directory: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> None:
    """The four Fashion-MNIST-layout IDX files (28x28), gzip-compressed, with random content."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_train, dtype=np.uint8),
        rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    for filename, array in zip(IDX_FILES, arrays, strict=True):
        write_idx(directory / filename, array)


def truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


@pytest.fixture(autouse=True)
def _isolated(offline_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network or real dataset cache; relative paths (e.g. the default runs/) land in tmp."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)


@dataclass
class TrainedRun:
    path: Path
    out: str
    err: str


def _train(run_dir: Path, model: str, *extra: str) -> TrainedRun:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["train", model, *TINY, "--out", str(run_dir), *extra])
    assert code == 0, err.getvalue()
    return TrainedRun(run_dir, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A finished 2-epoch VAE run on digits. Read only: tests that change a run copy it."""
    return _train(tmp_path_factory.mktemp("vae") / "run", "vae")


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """A finished 2-epoch conditional VAE run on digits. Read only."""
    return _train(tmp_path_factory.mktemp("cvae") / "run", "cvae")


def copy_run(run: TrainedRun, dest: Path) -> Path:
    shutil.copytree(run.path, dest)
    return dest


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


# --- argument and option errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["train", "vea"], ["'vea'", "did you mean 'vae'", "cvae"]),
        (
            ["train", "vae", "--dataset", "fashion-mnst", "--epochs", "1"],
            ["'fashion-mnst'", "did you mean 'fashion-mnist'", "digits"],
        ),
        (["train", "vae", "--frobnicate", "1"], ["--frobnicate"]),
        (["train", "vae", "--dataset", "digits", "--epochs", "0"], ["epochs", "got 0"]),
        (["train", "vae", "--dataset", "digits", "--lr", "-1"], ["lr", "-1"]),
        (["train", "vae", "--dataset", "digits", "--latent-dim", "abc"], ["latent_dim", "'abc'"]),
        (["train", "vae", "--dataset", "digits", "--latent-dim", "0"], ["latent_dim", "got 0"]),
        (["train", "vae", "--dataset", "digits", "--hidden", "500,x"], ["hidden", "'x'"]),
        (["train", "vae", "--dataset", "digits", "--batch-size", "0"], ["batch_size", "got 0"]),
        (["train", "vae", "--dataset", "digits", "--device", "tpu"], ["device", "'tpu'"]),
        (["frobnicate"], ["'frobnicate'", "train"]),
        (["evaluate", "somewhere", "--jsn"], ["--jsn"]),
    ],
    ids=[
        "unknown-model",
        "unknown-dataset",
        "unknown-option",
        "epochs-0",
        "lr-negative",
        "latent-dim-abc",
        "latent-dim-0",
        "hidden-500,x",
        "batch-size-0",
        "device-tpu",
        "unknown-command",
        "evaluate-unknown-option",
    ],
)
def test_usage_errors(capsys, argv: list[str], fragments: list[str]) -> None:
    assert_user_error(cli(capsys, *argv), *fragments)


def test_subcommand_parse_error_is_one_line(capsys) -> None:
    result = cli(capsys, "train", "vae", "--epochs")  # the value is missing
    assert result.code == 2 and "Traceback" not in result.err
    assert len(result.err.splitlines()) == 1 and "--epochs" in result.err


def test_subcommand_parse_error_has_the_common_prefix(capsys) -> None:
    assert_user_error(cli(capsys, "train", "vae", "--epochs"), "--epochs")


def test_version(capsys) -> None:
    result = cli(capsys, "--version")
    assert result.code == 0 and result.out.strip() == "genae " + __version__


# --- help ---------------------------------------------------------------------------------------


def help_text(capsys, monkeypatch, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", "250")  # one line per option
    result = cli(capsys, *args, "--help")
    assert result.code == 0 and result.err == "", result
    return result.out


# "  --flag METAVAR  help", "  --flag, --no-flag  help"; a long flag has its help on the next line
OPTION_LINE = re.compile(
    r"^  (--[a-z0-9-]+)(?: [A-Z][A-Z,.]*)?(?:, --no-[a-z0-9-]+)?(?: {2,}(.*))?$"
)


def option_help(text: str) -> dict[str, str]:
    """--flag -> its help text, from argparse's help output (printed without wrapping)."""
    options = {}
    lines = text.splitlines()
    for line, following in zip(lines, [*lines[1:], ""], strict=True):
        match = OPTION_LINE.match(line)
        if match:
            shown = match.group(2) or (following if following.startswith(" " * 8) else "")
            options[match.group(1)] = shown.strip()
    return options


def test_train_help_lists_every_model(capsys, monkeypatch) -> None:
    text = help_text(capsys, monkeypatch, "train")
    for name, cls in MODELS.items():
        assert re.search(rf"^    {re.escape(name)}\s+\S", text, re.M), f"{name} not listed"
        assert model_summary(name, cls) in text


def test_train_model_help_shows_only_that_models_options(capsys, monkeypatch) -> None:
    text = help_text(capsys, monkeypatch, "train", "m2")
    options = option_help(text)
    assert "training options:" in text and "m2 options:" in text
    for field in [*field_types(TrainConfig), *option_types(M2Config)]:
        assert "--" + field.replace("_", "-") in options, field
    foreign_options = ("--prior-regions", "--clusters", "--block-channels", "--features")
    for foreign in (*foreign_options, "--m1-epochs"):
        assert foreign not in options
    # derived fields (the run fills them in from its data) are no flags
    for derived in ("--labelled-examples", "--unlabelled-examples"):
        assert derived not in options
    assert options["--alpha"].startswith("The paper's alpha as a multiple of N")
    assert "(default: 30.0)" in options["--alpha"]
    assert "(default: yes)" in options["--baseline"]  # booleans: --baseline / --no-baseline
    assert "--no-baseline" in text


@pytest.mark.parametrize("model", list(MODELS))
def test_every_train_option_has_a_help_line(capsys, monkeypatch, model: str) -> None:
    options = option_help(help_text(capsys, monkeypatch, "train", model))
    assert len(options) > len(field_types(TrainConfig))
    assert not [flag for flag, shown in options.items() if not shown]


@pytest.mark.parametrize("command", ["train", "sample", "evaluate", "experiment", "demo"])
def test_threads_option_is_documented(capsys, monkeypatch, command: str) -> None:
    args = ["train", "vae"] if command == "train" else [command]
    options = option_help(help_text(capsys, monkeypatch, *args))
    assert options["--threads"] == THREADS_HELP


def test_threads_is_accepted_and_ignored_by_train(capsys) -> None:
    result = cli(capsys, "train", "vae", "--threads", "1", "--dataset", "digits", "--epochs", "0")
    assert_user_error(result, "epochs", "got 0")  # parsed past --threads to the config check


def test_option_of_another_model(capsys) -> None:
    assert_user_error(
        cli(capsys, "train", "m2", "--prior-regions", "3"),
        "--prior-regions",
        "does not apply to model 'm2'",
        "aae",
        "genae train m2 --help",
    )


# --- TOML config errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments", "names_file"),
    [
        ("[train]\nepoch = 3\n", ["'epoch'", "did you mean 'epochs'"], False),
        ("[model]\nlatnt_dim = 3\n", ["'latnt_dim'", "did you mean 'latent_dim'"], False),
        ('[train]\nepochs = "three"\n', ["epochs", "'three'"], False),
        ("[train]\nhidden = [32]\n", ["'hidden'"], False),  # a model key in the train table
        ("[train\nepochs = 3\n", ["invalid TOML"], True),
        ("[trian]\nepochs = 3\n", ["'trian'", "did you mean 'train'"], True),
        ('[model]\nname = "cvae"\n', ["'cvae'", "'vae'"], True),
    ],
    ids=[
        "unknown-key",
        "unknown-model-key",
        "wrong-type",
        "key-in-wrong-table",
        "bad-syntax",
        "unknown-table",
        "other-model",
    ],
)
def test_toml_config_errors(
    capsys, tmp_path: Path, text: str, fragments: list[str], names_file: bool
) -> None:
    config = tmp_path / "conf.toml"
    config.write_text(text)
    result = cli(capsys, "train", "vae", "--config", config, "--dataset", "digits", "--out", "o")
    line = assert_user_error(result, *fragments)
    if names_file:
        assert str(config) in line


def test_missing_config_file(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert_user_error(cli(capsys, "train", "vae", "--config", missing), str(missing), "not found")


def test_config_path_is_a_directory(capsys, tmp_path: Path) -> None:
    assert_user_error(cli(capsys, "train", "vae", "--config", tmp_path), str(tmp_path))


def test_non_utf8_config_file(capsys, tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes("[train]\nepochs = 1  # café\n".encode("latin-1"))
    assert_user_error(cli(capsys, "train", "vae", "--config", config), str(config))


def test_toml_scalar_where_a_table_is_expected(capsys, tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text('model = "vae"\n')
    assert_user_error(cli(capsys, "train", "vae", "--config", config), str(config), "model")


# --- run directory errors ---------------------------------------------------------------------


def test_existing_run_dir_is_refused(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    before = snapshot(run)
    assert_user_error(cli(capsys, "train", "vae", *TINY, "--out", run), str(run), "--resume")
    assert snapshot(run) == before


def test_resume_without_checkpoint(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    (run / "checkpoint.safetensors").unlink()
    result = cli(capsys, "train", "vae", *TINY, "--out", run, "--resume", "--epochs", "3")
    assert_user_error(result, str(run), "no checkpoint")
    assert len(read_metrics(run)) == 2


def test_resume_without_run_dir(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = cli(capsys, "train", "vae", *TINY, "--out", missing, "--resume")
    assert_user_error(result, str(missing), "not found")


def test_resume_with_corrupt_checkpoint(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    truncate(run / "checkpoint.safetensors", keep=100)
    result = cli(capsys, "train", "vae", *TINY, "--out", run, "--resume", "--epochs", "3")
    assert_user_error(result, str(run / "checkpoint.safetensors"))


def test_force_refuses_a_directory_that_is_not_a_run(capsys, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.tex").write_text("years of work")
    (precious / "sub" / "data.csv").write_text("1,2,3")
    result = cli(capsys, "train", "vae", *TINY, "--out", precious, "--force")
    assert_user_error(result, str(precious), "not a genae run directory")
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert (precious / "sub" / "data.csv").read_text() == "1,2,3"
    assert sorted(p.name for p in precious.iterdir()) == ["sub", "thesis.tex"]


@pytest.mark.parametrize(
    "bad", [("--latent-dim", "0"), ("--dataset", "fashion-mnst")], ids=["model", "dataset"]
)
def test_force_with_invalid_options_keeps_the_old_run(
    capsys, vae_run: TrainedRun, tmp_path: Path, bad: tuple[str, str]
) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    before = snapshot(run)
    assert_user_error(cli(capsys, "train", "vae", *TINY, *bad, "--out", run, "--force"))
    assert snapshot(run) == before


def test_out_is_a_file(capsys, tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("not a directory")
    assert_user_error(cli(capsys, "train", "vae", *TINY, "--out", target), str(target))
    assert target.read_text() == "not a directory"


def test_resume_cannot_change_the_learning_rate(
    capsys, vae_run: TrainedRun, tmp_path: Path
) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    before = snapshot(run)
    result = cli(
        capsys, "train", "vae", *TINY, "--out", run, "--resume", "--epochs", "3", "--lr", "0.01"
    )
    assert_user_error(result, "lr", "0.001", "--resume")
    assert snapshot(run) == before


def test_resume_cannot_change_the_model_config(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    before = snapshot(run)
    result = cli(
        capsys, "train", "vae", "--out", run, "--resume", "--epochs", "3", "--latent-dim", "5"
    )
    assert_user_error(result, "latent_dim", "--resume")
    assert snapshot(run) == before


def test_resume_as_another_model(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    result = cli(capsys, "train", "cvae", "--out", run, "--resume", "--epochs", "3")
    assert_user_error(result, "'vae'", "'cvae'")


def test_resume_accepts_the_original_model_flags(
    capsys, vae_run: TrainedRun, tmp_path: Path
) -> None:
    """Re-running the original command line with --resume must not count as a change."""
    run = copy_run(vae_run, tmp_path / "run")
    result = cli(capsys, "train", "vae", *TINY, "--out", run, "--resume", "--epochs", "3")
    assert result.code == 0, result.err
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2, 3]


def test_sample_missing_run_dir(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    result = cli(capsys, "sample", missing, "--out", tmp_path / "s.png")
    assert_user_error(result, str(missing), "not found")
    assert not (tmp_path / "s.png").exists()


@pytest.mark.parametrize("label", [99, 10, -1])
def test_sample_label_out_of_range(
    capsys, cvae_run: TrainedRun, tmp_path: Path, label: int
) -> None:
    out = tmp_path / "s.png"
    result = cli(capsys, "sample", cvae_run.path, "--label", label, "--out", out)
    assert_user_error(result, "--label", "0..9", str(label))
    assert not out.exists()


def test_sample_label_on_unconditional_model(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    result = cli(capsys, "sample", vae_run.path, "--label", "1", "--out", out)
    assert_user_error(result, "--label", "'vae'", "not class-conditional")
    assert not out.exists()


def test_sample_out_must_be_png(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    out = tmp_path / "x.jpg"
    assert_user_error(cli(capsys, "sample", vae_run.path, "--out", out), "--out", "x.jpg")
    assert not out.exists()


def test_sample_n_must_be_positive(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    result = cli(capsys, "sample", vae_run.path, "--n", "0", "--out", tmp_path / "s.png")
    assert_user_error(result, "--n", "0")


def test_evaluate_directory_without_config(capsys, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert_user_error(cli(capsys, "evaluate", tmp_path), str(tmp_path / "config.json"))


def test_evaluate_invalid_config_json(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    (run / "config.json").write_text("{ not json")
    assert_user_error(cli(capsys, "evaluate", run), str(run / "config.json"), "JSON")


def test_evaluate_missing_run_dir(capsys, tmp_path: Path) -> None:
    assert_user_error(cli(capsys, "evaluate", tmp_path / "gone"), str(tmp_path / "gone"))


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_corrupt_weights_name_the_file(
    capsys, vae_run: TrainedRun, tmp_path: Path, command: str
) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    truncate(run / "model.safetensors", keep=100)
    extra = ["--out", tmp_path / "s.png"] if command == "sample" else []
    assert_user_error(cli(capsys, command, run, *extra), str(run / "model.safetensors"))


@pytest.mark.parametrize("victim", IDX_FILES)
def test_truncated_idx_file_in_data_dir(capsys, tmp_path: Path, victim: str) -> None:
    data = tmp_path / "fm"
    write_fake_idx(data)
    truncate(data / victim)
    result = cli(
        capsys,
        "train",
        "vae",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--out",
        tmp_path / "run",
    )
    assert_user_error(result, str(data / victim))


def test_truncated_uncompressed_idx_file(capsys, tmp_path: Path) -> None:
    data = tmp_path / "fm"
    write_fake_idx(data)
    gz = data / IDX_FILES[0]
    raw = data / IDX_FILES[0].removesuffix(".gz")
    write_idx(raw, np.zeros((20, 28, 28), dtype=np.uint8))
    gz.unlink()
    truncate(raw)
    result = cli(capsys, "train", "vae", "--dataset", "fashion-mnist", "--data-dir", data)
    assert_user_error(result, str(raw))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_cuda(capsys, tmp_path: Path) -> None:
    result = cli(capsys, "train", "vae", *TINY, "--device", "cuda", "--out", tmp_path / "r")
    assert_user_error(result, "cuda")


def test_evaluate_unknown_device(capsys, vae_run: TrainedRun) -> None:
    assert_user_error(cli(capsys, "evaluate", vae_run.path, "--device", "tpu"), "tpu")


# --- happy paths: train, evaluate, sample -----------------------------------------------------


def test_train_writes_a_complete_run_dir(vae_run: TrainedRun) -> None:
    run = vae_run.path
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl"):
        assert (run / name).is_file(), name
    history = read_metrics(run)
    assert [m["epoch"] for m in history] == [1, 2]
    for record in history:
        assert set(record) >= METRIC_KEYS, record
        assert all(math.isfinite(record[k]) for k in ("val_neg_elbo", "val_recon_mse", "val_kl"))
        assert record["val_kl"] >= 0 and record["val_recon_mse"] >= 0
    # Snapshots at the configured epochs (1, 5, 10) that were reached, and at the last epoch.
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["epoch_001.png", "epoch_002.png"]
    with Image.open(run / "samples" / "epoch_002.png") as image:
        assert image.format == "PNG" and image.size == grid_size(64, 8)

    config = read_config(run)
    assert config["model"] == "vae"
    assert config["model_config"]["hidden"] == [32] and config["model_config"]["latent_dim"] == 2
    assert config["train"]["dataset"] == "digits" and config["train"]["epochs"] == 2
    assert config["train"]["progress"] is False
    assert config["data_spec"]["shape"] == [1, 8, 8]
    assert "finished vae" in vae_run.out
    assert f"test neg_elbo {history[-1]['test_neg_elbo']:.4f}" in vae_run.out


def test_evaluate_json_matches_the_last_epoch(capsys, vae_run: TrainedRun) -> None:
    result = cli(capsys, "evaluate", vae_run.path, "--json")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["model"] == "vae" and report["dataset"] == "digits"
    assert report["split"] == "test" and report["examples"] == 297
    last = read_metrics(vae_run.path)[-1]
    for key in ("neg_elbo", "recon_mse", "kl"):  # the run's own final read of the test split
        assert report[key] == pytest.approx(last[f"test_{key}"], rel=1e-6), key


def test_evaluate_prints_an_aligned_table(capsys, vae_run: TrainedRun) -> None:
    as_json = json.loads(cli(capsys, "evaluate", vae_run.path, "--json").out)
    result = cli(capsys, "evaluate", vae_run.path)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    rows = dict(line.split(None, 1) for line in lines)
    assert list(rows) == list(as_json)
    assert rows["neg_elbo"] == f"{as_json['neg_elbo']:.4f}"
    assert rows["examples"] == "297" and rows["model"] == "vae"
    value_columns = {len(line) - len(line.split(None, 1)[1]) for line in lines}
    assert len(value_columns) == 1  # every value starts in the same column


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_sample_writes_a_png_grid(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    out = tmp_path / "f.png"
    result = cli(capsys, "sample", vae_run.path, "--n", "16", "--out", out)
    assert result.code == 0, result.err
    assert str(out) in result.out
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.mode == "L"
        assert image.size == grid_size(16, 8)  # 8 per row: 2 rows
    pixels = _pixels(out)
    assert (pixels[:4] == 255).all() and (pixels[:, :4] == 255).all()  # white border

    # Seeded: the same seed gives the same picture, another seed another one.
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    assert cli(capsys, "sample", vae_run.path, "--n", "16", "--out", again).code == 0
    assert cli(capsys, "sample", vae_run.path, "--n", "16", "--seed", "1", "--out", other).code == 0
    assert np.array_equal(_pixels(again), pixels)
    assert not np.array_equal(_pixels(other), pixels)


def test_sample_default_count(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir" / "f.png"  # parent directories are created
    assert cli(capsys, "sample", vae_run.path, "--out", out).code == 0
    assert _pixels(out).shape[::-1] == grid_size(64, 8)


def test_cvae_sample_with_label(capsys, cvae_run: TrainedRun, tmp_path: Path) -> None:
    three, four = tmp_path / "3.png", tmp_path / "4.png"
    result = cli(capsys, "sample", cvae_run.path, "--label", "3", "--n", "16", "--out", three)
    assert result.code == 0, result.err
    assert (
        cli(capsys, "sample", cvae_run.path, "--label", "4", "--n", "16", "--out", four).code == 0
    )
    width, height = grid_size(16, 8)
    assert _pixels(three).shape[0] == height
    assert _pixels(three).shape[1] > width  # the class name on the left of each row
    # Same seed, same noise: only the label differs, and it must change the images.
    assert not np.array_equal(_pixels(three)[:, -width:], _pixels(four)[:, -width:])


def test_cvae_default_grid_has_one_row_per_class(
    capsys, cvae_run: TrainedRun, tmp_path: Path
) -> None:
    out = tmp_path / "grid.png"
    assert cli(capsys, "sample", cvae_run.path, "--out", out).code == 0
    labelled = _pixels(out)
    width, height = grid_size(100, 10)  # 10 classes x 10 columns
    assert labelled.shape[0] == height and labelled.shape[1] > width
    pixels = labelled[:, -width:]  # the grid, right of the class names
    assert (labelled[:, :-width] < 128).any(), "no class names drawn"
    # Scale 2: 4-pixel white padding every 20 pixels, exactly 10 rows and 10 columns of cells.
    stride, pad = 2 * (8 + 2), 2 * 2
    for k in range(11):
        assert (pixels[k * stride : k * stride + pad] == 255).all(), f"row padding {k}"
        assert (pixels[:, k * stride : k * stride + pad] == 255).all(), f"column padding {k}"
    assert pixels.shape[0] == 10 * stride + pad
    # Rows share the noise and differ by the label.
    first_row, second_row = pixels[pad : pad + 16], pixels[stride + pad : stride + pad + 16]
    assert not np.array_equal(first_row, second_row)
    snapshot_png = cvae_run.path / "samples" / "epoch_002.png"
    assert _pixels(snapshot_png).shape == labelled.shape


def test_resume_continues_a_finished_run(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    before = (run / "metrics.jsonl").read_text().splitlines()
    weights_before = (run / "model.safetensors").read_bytes()
    # Repeating unchanged non-resumable settings (--lr, --dataset) is allowed.
    result = cli(
        capsys,
        "train",
        "vae",
        "--out",
        run,
        "--resume",
        "--epochs",
        "3",
        "--lr",
        "1e-3",
        "--dataset",
        "digits",
        "--no-progress",
    )
    assert result.code == 0, result.err
    after = (run / "metrics.jsonl").read_text().splitlines()
    assert len(after) == 3
    assert after[0] == before[0]
    # epoch 2 stays, but its test_* values (the shorter run's final read) go: the longer run
    # reads the test split once, after its own last epoch
    untested = {k: v for k, v in json.loads(before[1]).items() if not k.startswith("test_")}
    assert json.loads(after[1]) == untested
    assert json.loads(after[2])["epoch"] == 3 and "test_neg_elbo" in json.loads(after[2])
    # 1350 examples (150 of the 1500 validate) / batch 100: 14 steps per epoch
    assert json.loads(after[2])["step"] == 3 * 14
    assert (run / "model.safetensors").read_bytes() != weights_before
    assert read_config(run)["train"]["epochs"] == 3
    assert (run / "samples" / "epoch_003.png").is_file()


def test_force_overwrites_a_run(capsys, vae_run: TrainedRun, tmp_path: Path) -> None:
    run = copy_run(vae_run, tmp_path / "run")
    (run / "stale.txt").write_text("from before")
    shutil.copy(run / "samples" / "epoch_002.png", run / "samples" / "epoch_009.png")
    result = cli(
        capsys, "train", "vae", *TINY, "--epochs", "1", "--latent-dim", "3", "--out", run, "--force"
    )
    assert result.code == 0, result.err
    assert not (run / "stale.txt").exists()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png"]
    assert [m["epoch"] for m in read_metrics(run)] == [1]
    assert read_config(run)["model_config"]["latent_dim"] == 3


def test_datasets_lists_every_dataset(capsys, tmp_path: Path) -> None:
    result = cli(capsys, "datasets")
    assert result.code == 0, result.err
    rows = [line.split(None, 2) for line in result.out.splitlines()]
    from genae.data.sources import DATASET_NAMES

    assert [r[0] for r in rows] == list(DATASET_NAMES)
    assert {"mnist", "fashion-mnist", "digits"} <= set(DATASET_NAMES)
    status = {r[0]: (r[1], r[2]) for r in rows}
    assert status["digits"] == ("yes", "embedded")
    assert status["mnist"][0] == "no" and "--data-dir" in status["mnist"][1]
    assert status["fashion-mnist"][0] == "no"  # system dirs are isolated away in tests
    assert "apt-get install dataset-fashion-mnist" in status["fashion-mnist"][1]

    write_fake_idx(tmp_path / "d" / "mnist")
    result = cli(capsys, "datasets", "--data-dir", tmp_path / "d")
    status = {r[0]: (r[1], r[2]) for r in (ln.split(None, 2) for ln in result.out.splitlines())}
    assert status["mnist"] == ("yes", str(tmp_path / "d" / "mnist"))
    assert status["fashion-mnist"][0] == "no"


def test_toml_config_is_applied_and_flags_override_it(capsys, tmp_path: Path) -> None:
    config = tmp_path / "conf.toml"
    config.write_text(
        "[train]\n"
        'dataset = "digits"\n'
        "epochs = 1\n"
        "batch_size = 50\n"
        "lr = 0.002\n"
        "seed = 7\n"
        "progress = false\n"
        "snapshot_epochs = [1]\n"
        "\n"
        "[model]\n"
        'name = "vae"\n'
        "hidden = [16, 8]\n"
        "latent_dim = 3\n"
        'activation = "tanh"\n'
    )
    run = tmp_path / "run"
    result = cli(
        capsys,
        "train",
        "vae",
        "--config",
        config,
        "--lr",
        "0.005",
        "--latent-dim",
        "2",
        "--out",
        run,
    )
    assert result.code == 0, result.err
    saved = read_config(run)
    train, model = saved["train"], saved["model_config"]
    # From the file:
    assert train["dataset"] == "digits" and train["epochs"] == 1 and train["batch_size"] == 50
    assert train["seed"] == 7 and train["progress"] is False and train["snapshot_epochs"] == [1]
    assert model["hidden"] == [16, 8] and model["activation"] == "tanh"
    # Overridden on the command line:
    assert train["lr"] == 0.005 and model["latent_dim"] == 2
    # And actually used: 1350 examples (150 of the 1500 validate) in batches of 50: 27 steps.
    assert [(m["epoch"], m["step"]) for m in read_metrics(run)] == [(1, 27)]


def test_train_and_evaluate_from_a_data_dir(capsys, tmp_path: Path) -> None:
    data, other = tmp_path / "fm", tmp_path / "fm-other"
    write_fake_idx(data)
    write_fake_idx(other, n_test=5, seed=1)
    run = tmp_path / "run"
    result = cli(
        capsys,
        "train",
        "vae",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--hidden",
        "8",
        "--latent-dim",
        "2",
        "--no-progress",
        "--out",
        run,
    )
    assert result.code == 0, result.err
    saved = read_config(run)
    assert saved["train"]["data_dir"] == str(data)
    assert saved["data_spec"]["shape"] == [1, 28, 28]
    assert read_metrics(run)[0]["step"] == 2  # 20 training images in batches of 10

    report = json.loads(cli(capsys, "evaluate", run, "--json").out)
    assert report["dataset"] == "fashion-mnist" and report["examples"] == 10
    assert report["neg_elbo"] == pytest.approx(read_metrics(run)[-1]["test_neg_elbo"], rel=1e-6)
    # --data-dir on evaluate replaces the run's data directory.
    report = json.loads(cli(capsys, "evaluate", run, "--json", "--data-dir", other).out)
    assert report["examples"] == 5


# --- the installed entry points ---------------------------------------------------------------


def test_console_entry_points(tmp_path: Path) -> None:
    env = {**os.environ, "GENAE_DATA_DIR": str(tmp_path / "cache")}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
        )

    shown = run(sys.executable, "-m", "genae", "--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("train", "sample", "evaluate", "datasets"):
        assert command in shown.stdout

    script = Path(sys.executable).with_name("genae")
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "genae"]
    failed = run(*entry, "train", "vea")
    assert failed.returncode == 2
    assert failed.stdout == ""
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("genae: error: model: unknown model 'vea' (did you mean 'vae'?)")
