"""`--tensorboard DIR`: event files that TensorBoard's own reader reads back (scalars, sample
grids, the configs), and a killed run resumed into the same directory continues its curves
without writing any step twice."""

from __future__ import annotations

import pytest
from faults import run_genae

from genae.cli import main
from genae.config import TrainConfig
from genae.errors import ConfigError
from genae.training import tensorboard

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is an optional extra (genae[tb], part of genae[dev])",
)

TRAIN = [
    "train",
    "vae",
    "--dataset",
    "digits",
    "--hidden",
    "16",
    "--latent-dim",
    "2",
    "--no-progress",
    "--log-every",
    "2",
]


def read_events(directory):
    """Every scalar tag's (step, value) points and every image tag's steps, as TensorBoard
    reads them (orphaned events of an interrupted process purged, as TensorBoard does)."""
    accumulator = event_accumulator.EventAccumulator(
        str(directory), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    accumulator.Reload()
    tags = accumulator.Tags()
    scalars = {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in tags["scalars"]
    }
    images = {tag: [event.step for event in accumulator.Images(tag)] for tag in tags["images"]}
    return scalars, images, tags["tensors"]


def test_a_run_writes_scalars_sample_grids_and_its_configs(tmp_path, capsys):
    board = tmp_path / "tb"
    args = [*TRAIN, "--epochs", "2", "--snapshot-epochs", "1", "--tensorboard", str(board)]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    scalars, images, texts = read_events(board)
    steps_per_epoch = 14  # digits: 1350 training images, batch 100
    assert [step for step, _ in scalars["val/neg_elbo"]] == [steps_per_epoch, 2 * steps_per_epoch]
    assert [step for step, _ in scalars["train/loss"]] == [steps_per_epoch, 2 * steps_per_epoch]
    assert [step for step, _ in scalars["train_step/loss"]] == list(range(2, 29, 2))
    assert images["samples"] == [steps_per_epoch, 2 * steps_per_epoch]  # epoch 1, and the last
    assert "config/text_summary" in texts


def test_a_killed_run_resumed_continues_its_curves_without_duplicates(tmp_path):
    args = [*TRAIN, "--epochs", "3", "--checkpoint-every", "4", "--snapshot-epochs", "1,2,3"]

    def train(name, *extra, **env):
        out = tmp_path / name
        return run_genae(
            tmp_path, [*args, "--out", out, "--tensorboard", out / "tb", *extra], **env
        )

    assert train("full").returncode == 0
    killed = train("cut", FAULT_AT_BATCH="23")  # mid-epoch 2, past the checkpoint at step 20
    assert killed.returncode != 0
    resumed = train("cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr

    full, full_images, _ = read_events(tmp_path / "full" / "tb")
    cut, cut_images, _ = read_events(tmp_path / "cut" / "tb")
    assert cut.keys() == full.keys()
    for tag, points in cut.items():
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps)), f"{tag}: a step written twice: {steps}"
        assert steps == [step for step, _ in full[tag]], tag
        if tag != "train/samples_per_s":  # the one measurement of time, not of the model
            assert [v for _, v in points] == pytest.approx([v for _, v in full[tag]]), tag
    assert cut_images == full_images


def test_asking_for_tensorboard_without_the_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(tensorboard, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"tensorboard: .*pip install 'genae\[tb\]'"):
        tensorboard.check_available(TrainConfig(tensorboard="tb"))
    tensorboard.check_available(TrainConfig())  # not asked for: nothing needed
