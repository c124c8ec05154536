"""Multi-process training: 2 ranks (gloo, CPU) follow a 1-process run with the same global batch,
and a killed 2-rank run resumes exactly."""

import json

import pytest
import torch
from faults import run_genae
from safetensors.torch import load_file

AAE_ARGS = [
    "train",
    "aae",
    "--dataset",
    "digits",
    "--epochs",
    "2",
    "--hidden",
    "32",
    "--disc-hidden",
    "16",
    "--latent-dim",
    "2",
    "--batch-size",
    "100",
    "--no-progress",
    "--snapshot-epochs",
    "2",
]
ARGS = [
    "train",
    "vae",
    "--dataset",
    "digits",
    "--epochs",
    "2",
    "--hidden",
    "32",
    "--latent-dim",
    "3",
    "--batch-size",
    "100",
    "--no-progress",
    "--snapshot-epochs",
    "2",
]


def launch(tmp_path, out, nproc, *extra, env=None, args=None):
    return run_genae(
        tmp_path, [*(args or ARGS), "--out", str(out), *extra], nproc=nproc, **(env or {})
    )


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    one = launch(tmp_path, tmp_path / "one", 1, env={"NO_NOISE": "1"})
    assert one.returncode == 0, one.stderr
    two = launch(tmp_path, tmp_path / "two", 2, env={"NO_NOISE": "1"})
    assert two.returncode == 0, two.stderr
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
    # only rank 0 wrote files, and metrics were reduced over both ranks' slices
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    m1 = json.loads((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()[-1])
    m2 = json.loads(lines[-1])
    assert m2["val_neg_elbo"] == pytest.approx(m1["val_neg_elbo"], rel=1e-3)
    assert m2["train_loss"] == pytest.approx(m1["train_loss"], rel=1e-3)


def test_two_rank_run_killed_and_resumed_ends_where_an_uninterrupted_one_does(tmp_path):
    extra = ["--checkpoint-every", "4"]
    full = launch(tmp_path, tmp_path / "full", 2, *extra)
    assert full.returncode == 0, full.stderr
    killed = launch(tmp_path, tmp_path / "cut", 2, *extra, env={"FAULT_AT_BATCH": "20"})
    assert killed.returncode != 0
    resumed = launch(tmp_path, tmp_path / "cut", 2, *extra, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_with_another_process_count_is_refused(tmp_path):
    extra = ["--checkpoint-every", "4", "--epochs", "1"]
    first = launch(tmp_path, tmp_path / "r", 2, *extra, env={"FAULT_AT_BATCH": "10"})
    assert first.returncode != 0
    again = launch(tmp_path, tmp_path / "r", 1, *extra, "--resume")
    assert again.returncode == 2
    assert "written by 2 processes" in again.stderr


def test_an_adversarial_model_on_two_ranks_matches_one_process(tmp_path):
    """Three phases, each through DDP with its own optimiser (and parameters it leaves unused)."""
    one = launch(tmp_path, tmp_path / "one", 1, env={"NO_NOISE": "1"}, args=AAE_ARGS)
    assert one.returncode == 0, one.stderr
    two = launch(tmp_path, tmp_path / "two", 2, env={"NO_NOISE": "1"}, args=AAE_ARGS)
    assert two.returncode == 0, two.stderr
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)
