"""The trainer: learning, determinism, exact resume (in-process and after SIGKILL), signals,
non-finite losses."""

import dataclasses
import json
import math
import signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from faults import run_genae
from safetensors.torch import load_file

from genae.api import fit
from genae.config import TrainConfig
from genae.data.memory import TensorData, draw_bernoulli
from genae.data.sources import load_dataset
from genae.errors import ConfigError, NonFiniteLossError
from genae.training.checkpoint import load_checkpoint
from genae.training.trainer import evaluate

TINY = {"hidden": [64], "latent_dim": 4}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def train_cfg(**overrides):
    return {"epochs": 3, "batch_size": 100, "progress": False, "snapshot_epochs": [], **overrides}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"weight {key} differs"


def test_small_vae_learns(digits):
    run = fit("vae", model_config=TINY, train_config=train_cfg(epochs=15, lr=3e-3), data=digits)
    first, last = run.history[0]["val_neg_elbo"], run.history[-1]["val_neg_elbo"]
    assert last < first - 8, f"validation neg_elbo went from {first:.1f} to {last:.1f}"
    torch.manual_seed(0)
    from genae.models.registry import build_model

    untrained = build_model("vae", TINY, digits.spec)
    base = evaluate(untrained, TensorData(digits.test.unseal()), 1000, seed=0)["neg_elbo"]
    # An untrained Bernoulli decoder pays ~log 2 per pixel (64 pixels): far worse than trained.
    assert base > 40 and last < base - 15


def test_same_seed_same_weights_other_seed_differs(digits, tmp_path):
    a = fit(
        "vae",
        model_config=TINY,
        train_config=train_cfg(epochs=1),
        data=digits,
        run_dir=tmp_path / "a",
    )
    b = fit(
        "vae",
        model_config=TINY,
        train_config=train_cfg(epochs=1),
        data=digits,
        run_dir=tmp_path / "b",
    )
    c = fit(
        "vae",
        model_config=TINY,
        train_config=train_cfg(epochs=1, seed=1),
        data=digits,
        run_dir=tmp_path / "c",
    )
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert a.history[0]["val_neg_elbo"] == b.history[0]["val_neg_elbo"]
    assert not torch.equal(
        weights(tmp_path / "a")["decoder.0.weight"], weights(tmp_path / "c")["decoder.0.weight"]
    )
    assert c.history[0]["val_neg_elbo"] != a.history[0]["val_neg_elbo"]


@pytest.mark.parametrize("lr_schedule", ["constant", "cosine"])
def test_resume_after_crash_mid_epoch_is_exact(digits, tmp_path, monkeypatch, lr_schedule):
    cfg = train_cfg(checkpoint_every=4, lr_schedule=lr_schedule)
    fit("vae", model_config=TINY, train_config=cfg, data=digits, run_dir=tmp_path / "full")

    calls = {"n": 0}
    original = TensorData.batch

    def crashing_batch(self, index):
        calls["n"] += 1
        if calls["n"] == 22:  # in epoch 2, after the step-20 checkpoint
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(TensorData, "batch", crashing_batch)
    with pytest.raises(KeyboardInterrupt):
        fit("vae", model_config=TINY, train_config=cfg, data=digits, run_dir=tmp_path / "cut")
    monkeypatch.setattr(TensorData, "batch", original)
    _, meta = load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")
    assert meta["state"]["epoch"] == 2 and meta["state"]["step_in_epoch"] > 0

    resumed = fit("vae", train_config={}, data=digits, run_dir=tmp_path / "cut", resume=True)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "cut"))
    full_metrics = [
        json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["val_neg_elbo"] for m in resumed.history] == [m["val_neg_elbo"] for m in full_metrics]


def test_resume_compares_only_the_options_given_and_keeps_an_explicit_default(digits, tmp_path):
    """What a caller sets is recorded in config.json; a resume compares only that with the saved
    run. A full TrainConfig sets every field, so its epochs=10 (the default) extends a run of 2
    (found by comparing with the defaults, it used to be dropped)."""
    run_dir = tmp_path / "run"
    config = TrainConfig(epochs=2, max_train_examples=200, progress=False, snapshot_epochs=())
    fit("vae", model_config=TINY, train_config=config, data=digits, run_dir=run_dir)
    explicit = json.loads((run_dir / "config.json").read_text())["explicit"]
    assert explicit == {
        "train": sorted(f.name for f in dataclasses.fields(TrainConfig)),
        "model": ["hidden", "latent_dim"],
    }
    resumed = fit(
        "vae", train_config=replace(config, epochs=10), data=digits, run_dir=run_dir, resume=True
    )
    assert [m["epoch"] for m in resumed.history] == list(range(1, 11))
    # A mapping sets its keys only: the saved lr and seed stand, an explicit default is compared.
    more = fit("vae", train_config={"epochs": 11}, data=digits, run_dir=run_dir, resume=True)
    assert len(more.history) == 11
    with pytest.raises(ConfigError, match="latent_dim: the run was started with 4"):
        fit(
            "vae",
            model_config={"latent_dim": 16},
            train_config={"epochs": 12},
            data=digits,
            run_dir=run_dir,
            resume=True,
        )
    with pytest.raises(ConfigError, match="seed: the run was started with 0"):
        fit(
            "vae",
            train_config=replace(config, epochs=12, seed=1),
            data=digits,
            run_dir=run_dir,
            resume=True,
        )


def test_cosine_schedule_sets_each_steps_learning_rate(digits, tmp_path):
    """digits: 1350 training images (150 of the 1500 validate), batch 100 -> 14 steps an epoch,
    42 in 3 epochs. The rate of the last step (41) is lr * (1 + cos(pi * 41/42)) / 2; a
    constant run keeps lr."""
    for schedule in ("cosine", "constant"):
        cfg = train_cfg(lr=2e-3, lr_schedule=schedule)
        fit("vae", model_config=TINY, train_config=cfg, data=digits, run_dir=tmp_path / schedule)
    _, meta = load_checkpoint(tmp_path / "cosine" / "checkpoint.safetensors")
    (group,) = meta["optimizers"]["loss"]["param_groups"]
    assert meta["state"]["global_step"] == 42
    assert group["lr"] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 41 / 42)), rel=1e-9)
    _, meta = load_checkpoint(tmp_path / "constant" / "checkpoint.safetensors")
    assert meta["optimizers"]["loss"]["param_groups"][0]["lr"] == 2e-3


TRAIN_ARGS = [
    "train",
    "vae",
    "--dataset",
    "digits",
    "--epochs",
    "3",
    "--hidden",
    "64",
    "--latent-dim",
    "4",
    "--checkpoint-every",
    "4",
    "--no-progress",
    "--snapshot-epochs",
    "3",
]


def run_cli(args, tmp_path, fault_at=None, fault_signal="SIGKILL"):
    return run_genae(tmp_path, args, FAULT_AT_BATCH=str(fault_at or 0), FAULT_SIGNAL=fault_signal)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_cli([*TRAIN_ARGS, "--out", str(out)], out.parent)
    assert result.returncode == 0, result.stderr
    return out


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(uninterrupted, tmp_path):
    out = tmp_path / "run"
    killed = run_cli([*TRAIN_ARGS, "--out", str(out)], tmp_path, fault_at=26)
    assert killed.returncode == -signal.SIGKILL
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["state"]["epoch"] == 2 and 0 < meta["state"]["step_in_epoch"] < 15
    resumed = run_cli([*TRAIN_ARGS, "--out", str(out), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(weights(uninterrupted), weights(out))
    assert (out / "metrics.jsonl").read_text() != ""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(uninterrupted, tmp_path):
    out = tmp_path / "run"
    stopped = run_cli(
        [*TRAIN_ARGS, "--out", str(out)], tmp_path, fault_at=9, fault_signal="SIGTERM"
    )
    assert stopped.returncode == 130
    assert "SIGTERM" in stopped.stderr and "--resume" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["state"]["global_step"] == 9  # the step in flight finished, then it saved
    resumed = run_cli([*TRAIN_ARGS, "--out", str(out), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(weights(uninterrupted), weights(out))


def test_non_finite_loss_names_step_and_term_and_keeps_last_checkpoint(
    digits, tmp_path, monkeypatch
):
    original = TensorData.batch
    calls = {"n": 0}

    def poisoned(self, index):
        calls["n"] += 1
        batch = original(self, index)
        if calls["n"] == 7:  # global step 6 (0-based)
            batch.x[0, 0, 0, 0] = float("nan")
        return batch

    monkeypatch.setattr(TensorData, "batch", poisoned)
    cfg = train_cfg(checkpoint_every=4, log_every=50)
    with pytest.raises(NonFiniteLossError) as info:
        fit("vae", model_config=TINY, train_config=cfg, data=digits, run_dir=tmp_path / "nan")
    assert info.value.step == 6
    assert info.value.term == "recon"  # the first term to break, not the total
    assert "step 6" in str(info.value) and "checkpoint" in str(info.value)
    tensors, meta = load_checkpoint(tmp_path / "nan" / "checkpoint.safetensors")
    assert meta["state"]["global_step"] == 4
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))


def test_metrics_jsonl_has_one_object_per_epoch(digits, tmp_path):
    fit(
        "vae",
        model_config=TINY,
        train_config=train_cfg(epochs=2, snapshot_epochs=[1, 2]),
        data=digits,
        run_dir=tmp_path / "r",
    )
    rows = [
        json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        assert row["val_neg_elbo"] == pytest.approx(row["val_recon_nll"] + row["val_kl"], rel=1e-6)
        assert row["train_samples_per_s"] > 0
    # the test split, read once at the end, in the last row only
    assert rows[1]["test_neg_elbo"] == pytest.approx(
        rows[1]["test_recon_nll"] + rows[1]["test_kl"], rel=1e-6
    )
    assert not any(key.startswith("test_") for key in rows[0])
    assert sorted(p.name for p in (tmp_path / "r" / "samples").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]


@pytest.mark.slow
def test_cvae_converges_faster_than_vae_on_fashion_mnist():
    """The seed's claim, at its setting (latent 2, MLP 500-500): after one epoch the label-fed
    model has the lower test negative ELBO."""
    try:
        data = load_dataset("fashion-mnist", download=False)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Fashion-MNIST not available: {exc}")
    cfg = {"epochs": 1, "batch_size": 100, "progress": False, "snapshot_epochs": []}
    model_config = {"hidden": [500, 500], "latent_dim": 2}
    vae = fit("vae", model_config=model_config, train_config=cfg, data=data)
    cvae = fit("cvae", model_config=model_config, train_config=cfg, data=data)
    assert cvae.history[0]["val_neg_elbo"] < vae.history[0]["val_neg_elbo"] - 3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_resumes(digits, tmp_path, precision):
    cfg = train_cfg(epochs=2, precision=precision, checkpoint_every=4)
    run = fit("vae", model_config=TINY, train_config=cfg, data=digits, run_dir=tmp_path / "a")
    assert run.history[-1]["val_neg_elbo"] < run.history[0]["val_neg_elbo"]
    _, meta = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    if precision == "fp16":  # the gradient scaler's state travels with the checkpoint
        assert meta["state"]["scalers"]["loss"]["scale"] > 0
    longer = fit(
        "vae", train_config={"epochs": 3}, data=digits, run_dir=tmp_path / "a", resume=True
    )
    assert len(longer.history) == 3


def test_restored_adam_moments_take_their_channels_last_weights_layout():
    """Checkpoints store moments contiguous; fused Adam walks a weight and its moments as flat
    arrays, so a channels_last weight restored beside contiguous moments would be updated with
    other elements' moments. After a restore the next step must equal the uninterrupted one."""
    from genae.training.checkpoint import optimizer_tensors, restore_optimizer

    def conv_and_adam(seed: int):
        torch.manual_seed(seed)
        conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        return conv, torch.optim.Adam(conv.parameters(), lr=0.1, fused=True)

    def step(conv, optimizer, seed: int) -> None:
        torch.manual_seed(seed)
        optimizer.zero_grad()
        conv(torch.randn(2, 3, 5, 5)).square().sum().backward()
        optimizer.step()

    conv, optimizer = conv_and_adam(0)
    for seed in range(3):
        step(conv, optimizer, seed)
    tensors, meta = optimizer_tensors("phase", optimizer)
    tensors = {key: value.clone() for key, value in tensors.items()}  # as read from the file
    resumed, resumed_optimizer = conv_and_adam(1)
    resumed.load_state_dict(conv.state_dict())
    restore_optimizer("phase", resumed_optimizer, tensors, meta)
    moments = resumed_optimizer.state[resumed.weight]["exp_avg"]
    assert moments.is_contiguous(memory_format=torch.channels_last)
    step(conv, optimizer, 3)
    step(resumed, resumed_optimizer, 3)
    assert torch.equal(resumed.weight, conv.weight)


def test_binarised_pixels_are_torch_bernoulli_draws_at_the_same_seed():
    """draw_bernoulli replaces torch.bernoulli in every binarised step for speed; on CPU it must
    draw exactly what torch.bernoulli drew (runs measured before it stay reproducible), and
    each pixel is 1 with its grey level's probability."""
    p = torch.rand(300, 1, 28, 28)
    expected = torch.bernoulli(p, generator=torch.Generator().manual_seed(4))
    drawn = draw_bernoulli(p, torch.Generator().manual_seed(4))
    assert torch.equal(drawn, expected)
    torch.manual_seed(9)
    expected = torch.bernoulli(p)
    torch.manual_seed(9)
    assert torch.equal(draw_bernoulli(p), expected)
    many = draw_bernoulli(torch.full((200_000,), 0.3))
    assert set(many.unique().tolist()) == {0.0, 1.0}
    assert abs(many.mean().item() - 0.3) < 0.005  # 5 standard errors
