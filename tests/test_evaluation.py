"""The domain classifier cache, registered metrics through `genae evaluate`, `genae experiment`
and `genae report` — the report rendered in headless Chromium.

One short vae-vs-cvae experiment on the embedded digits (2 epochs) is run once for the module,
with the judge cache in a temporary GENAE_DATA_DIR.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from genae.cli import main
from genae.data.sources import load_dataset
from genae.metrics import judge as judge_module


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(*args) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return Result(code, out.getvalue(), err.getvalue())


def assert_user_error(result: Result, *needles: str) -> None:
    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genae: error:"), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


SEEDS = [0, 1, 2, 3]  # vae-vs-cvae's


def experiment_args(out) -> list:
    """`genae experiment vae-vs-cvae`, shortened to 2 epochs on digits, into `out`."""
    return [
        "experiment",
        "vae-vs-cvae",
        "--dataset",
        "digits",
        "--out",
        out,
        "--epochs",
        "2",
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """(output dir, first run's result) of `genae experiment vae-vs-cvae` on digits."""
    root = tmp_path_factory.mktemp("evaluation")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENAE_DATA_DIR", str(root / "cache"))
        out = root / "exp"
        result = cli(*experiment_args(out))
        yield out, result


@pytest.fixture
def cache(experiment, monkeypatch):
    monkeypatch.setenv("GENAE_DATA_DIR", str(experiment[0].parent / "cache"))


def test_experiment_trains_the_judge_once_and_writes_runs_and_report(experiment):
    out, result = experiment
    assert result.code == 0, result.err
    assert "training one" in result.err and f"wrote {out / 'report.html'}" in result.out
    for run in ("vae", "cvae"):
        for seed in SEEDS:
            run_dir = out / run / f"seed-{seed}"
            assert json.loads((run_dir / "config.json").read_text())["train"]["seed"] == seed
            rows = (run_dir / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
            # the experiment's snapshots at 1, 5, 10, cut to the 2 epochs asked for
            assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
                "epoch_001.png",
                "epoch_002.png",
            ]
    summary = json.loads((out / "experiment.json").read_text())
    assert summary["experiment"] == "vae-vs-cvae" and summary["dataset"] == "digits"
    assert summary["seeds"] == SEEDS
    assert summary["runs"]["cvae"]["3"] == str(out / "cvae" / "seed-3")
    claims = summary["expectations"]
    assert [c["ok"] is not None for c in claims] == [True, True]
    assert [(c["judged_on"], c["seeds"]) for c in claims] == [("mean", SEEDS)] * 2
    page = (out / "report.html").read_text()
    # the settings are those the runs used (--epochs 2), not the experiment file's 10
    assert (
        "Trained with 2 epochs, Adam (lr 0.001, batch 100), validation split 150, seeds 0, 1, 2, 3."
        in page
    )
    assert "10 epochs" not in page
    assert "<h2>Validation neg_elbo per epoch</h2>" in page
    # the cvae's per-class table beside its class grid; the vae has neither
    conditional = page.split("<h2>Conditional generation, per class</h2>")[1].split("<h2>")[0]
    assert "<h3>cvae</h3>" in conditional and "<h3>vae</h3>" not in conditional
    assert "samples, one row per class</figcaption>" in conditional


def test_judge_is_cached_and_its_id_recorded(experiment, cache, capsys):
    out, _ = experiment
    judge = judge_module.domain_classifier("digits")
    assert "training" not in capsys.readouterr().err
    weights = judge.run_dir / "model.safetensors"
    assert judge.sha256 == judge_module.weights_sha256(weights)
    # a shared helper run: cache/runs/judge-<dataset>-<key of its recipe and data>
    assert judge.run_dir.parent == out.parent / "cache" / "runs"
    assert judge.run_dir.name.startswith("judge-digits-")
    # judged on its validation split: the judge never sees the test split while it trains
    assert judge.val_accuracy >= judge_module.TARGET_ACCURACY["digits"]
    assert "test_accuracy" not in json.loads(
        (judge.run_dir / "metrics.jsonl").read_text().splitlines()[-1]
    )
    evaluation = json.loads((out / "cvae" / "seed-0" / "evaluation.json").read_text())
    about = evaluation["computed_on"]["conditional_accuracy"]
    assert about["classifier"] == judge.id and about["samples"] == 10_000
    assert 0.0 <= evaluation["conditional_accuracy"] <= 1.0
    assert 0.0 <= evaluation["reconstruction_judged_accuracy"] <= 1.0
    assert len(about["reconstruction_judged_per_class"]) == 10
    # the judge is an ordinary run: genae evaluate works on it
    result = cli("evaluate", judge.run_dir, "--json")
    test = load_dataset("digits").test.unseal()
    predicted = judge.predict(test.images.float() / 255)
    test_accuracy = (predicted == test.labels).float().mean().item()
    assert json.loads(result.out)["accuracy"] == pytest.approx(test_accuracy)


def test_reconstruction_ceiling_of_a_perfect_reconstructor_is_the_judges_accuracy(cache):
    """A model whose reconstructions are the inputs themselves: the judge sees the real test
    images, so the ceiling must equal the judge's own accuracy on them, class by class."""
    from genae.data.memory import TensorData
    from genae.data.sources import load_dataset
    from genae.metrics.classification import judged_reconstruction_accuracy
    from genae.metrics.registry import EvalContext
    from genae.models.base import Reconstructs

    class Identity(Reconstructs):
        spec = load_dataset("digits").spec

        def reconstruct(self, x, y):
            return x

    test = TensorData(load_dataset("digits").test.unseal())
    judge = judge_module.domain_classifier("digits")
    overall, per_class = judged_reconstruction_accuracy(
        EvalContext(Identity(), test, "digits"), judge
    )
    predicted = judge.predict(test.batch(torch.arange(len(test))).x)
    assert overall == pytest.approx((predicted == test.labels).float().mean().item())
    for c in range(10):
        mask = test.labels == c
        assert per_class[c] == pytest.approx((predicted[mask] == c).float().mean().item(), abs=1e-4)


def test_relabel_accuracy_catches_a_generator_that_ignores_the_label(cache):
    """relabel(x, y') must show class y'. A model returning x unchanged ignores the label: the
    judge then sees the original class, never the requested one (score ~0). A model returning a
    real test image of class y' follows the label perfectly (score ~ the judge's accuracy)."""
    from genae.data.memory import TensorData
    from genae.data.sources import load_dataset
    from genae.metrics.classification import judged_relabel_accuracy
    from genae.metrics.registry import EvalContext
    from genae.models.base import Relabels

    test = TensorData(load_dataset("digits").test.unseal())
    everything = test.batch(torch.arange(len(test)))
    first_of_class = {c: everything.x[everything.y == c][:1] for c in range(10)}

    class IgnoresLabel(Relabels):
        spec = load_dataset("digits").spec

        def relabel(self, x, y):
            return x

    class FollowsLabel(IgnoresLabel):
        def relabel(self, x, y):
            return torch.cat([first_of_class[int(c)] for c in y])

    judge = judge_module.domain_classifier("digits")
    images, [(ignores, _)] = judged_relabel_accuracy(
        EvalContext(IgnoresLabel(), test, "digits"), judge
    )
    _, [(follows, follows_per_class)] = judged_relabel_accuracy(
        EvalContext(FollowsLabel(), test, "digits"), judge
    )
    predicted = judge.predict(torch.cat([first_of_class[c] for c in range(10)]))
    assert images == len(test)
    assert ignores < 0.05
    assert follows == pytest.approx((predicted == torch.arange(10)).float().mean().item(), abs=0.12)
    assert follows > 0.8
    # every image of new class c is the same image: the judge is right on it or wrong on it
    assert follows_per_class == [float(predicted[c] == c) for c in range(10)]


def test_conditional_accuracy_records_the_relabelled_test_images_apart(cache):
    """relabel_accuracy is computed on the test split's images, not on the prior samples that
    conditional_accuracy's record describes: its computed_on says so, with its own per-class
    shares (by the new class)."""
    from genae.data.memory import TensorData
    from genae.metrics.classification import conditional_accuracy
    from genae.metrics.registry import EvalContext, MetricOptions
    from genae.models.registry import build_model

    splits = load_dataset("digits")
    test = TensorData(splits.test.unseal())
    torch.manual_seed(0)
    config = {"latent_dim": 4, "encoder_channels": (8, 16), "img_disc_channels": (8,)}
    model = build_model("caae", config, splits.spec).eval()
    result = conditional_accuracy(EvalContext(model, test, "digits", MetricOptions(samples=100)))
    samples_about = result.about
    relabel_about = result.about_each["relabel_accuracy"]
    assert samples_about["samples"] == 100
    assert relabel_about["images"] == len(test) and relabel_about["split"] == "test"
    assert result.about_each["relabel_accuracy_second_judge"] == relabel_about
    for key, per_class in (
        ("relabel_accuracy", relabel_about["per_class"]),
        ("relabel_accuracy_second_judge", relabel_about["second_judge_per_class"]),
    ):
        assert len(per_class) == 10
        assert min(per_class) - 1e-4 <= result.values[key] <= max(per_class) + 1e-4


def test_a_value_computed_on_other_images_keeps_its_own_computed_on_record(experiment, monkeypatch):
    """conditional_accuracy also reports relabel_accuracy, computed on the test images rather
    than on its prior samples: a Result's `about_each` gives such a value its own record."""
    from genae.api import load
    from genae.data.memory import TensorData
    from genae.data.sources import load_dataset
    from genae.metrics import compute_metrics
    from genae.metrics.registry import METRICS, Result

    def two_sources(ctx):
        values = {"on_samples": 1.0, "on_test": 2.0}
        return Result(values, {"samples": 5}, {"on_test": {"images": len(ctx.test)}})

    monkeypatch.setitem(METRICS, "two_sources", two_sources)
    test = TensorData(load_dataset("digits").test.unseal())
    model = load(experiment[0] / "cvae" / "seed-0")
    values, on = compute_metrics(model, test, "digits", ["two_sources"])
    assert values["on_samples"] == 1.0 and values["on_test"] == 2.0
    assert on["on_samples"] == {"samples": 5}
    assert on["on_test"] == {"images": len(test)}


def test_experiment_rerun_reuses_finished_runs(experiment, cache):
    out, _ = experiment
    before = (out / "vae" / "seed-1" / "model.safetensors").read_bytes()
    result = cli(*experiment_args(out))
    assert result.code == 0, result.err
    assert result.err.count("reusing") == 2 * len(SEEDS) and "training one" not in result.err
    assert (out / "vae" / "seed-1" / "model.safetensors").read_bytes() == before


def test_experiment_jobs_train_in_child_processes_with_the_same_bits(experiment, cache, tmp_path):
    """--jobs 2: the first seed here, the other seeds two at a time in children, each logged;
    with the same thread count the weights and metrics equal a one-at-a-time run's."""

    def genae(*args) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "genae", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    common = ["--dataset", "digits", "--epochs", "1", "--no-progress", "--threads", "1"]
    alone = genae("experiment", "vae-vs-cvae", "--out", tmp_path / "alone", *common)
    jobs = genae("experiment", "vae-vs-cvae", "--out", tmp_path / "jobs", *common, "--jobs", 2)
    assert alone.returncode == 0 and jobs.returncode == 0, (alone.stderr, jobs.stderr)
    children = [(run, seed) for seed in SEEDS[1:] for run in ("vae", "cvae")]
    for run, seed in children:
        log = tmp_path / "jobs" / "logs" / f"{run}-seed-{seed}.log"
        assert f"training {run} seed {seed} (log: {log})" in jobs.stderr
        assert f"wrote {tmp_path / 'jobs' / run / f'seed-{seed}'}" in log.read_text()
    assert "training vae seed 0" not in jobs.stderr  # the first seed ran in the parent
    for run in ("vae", "cvae"):
        for seed in SEEDS:
            same = [tmp_path / way / run / f"seed-{seed}" for way in ("alone", "jobs")]
            assert (same[0] / "model.safetensors").read_bytes() == (
                same[1] / "model.safetensors"
            ).read_bytes(), (run, seed)
    accuracy = [
        json.loads((tmp_path / way / "cvae" / "seed-3" / "evaluation.json").read_text())
        for way in ("alone", "jobs")
    ]
    assert accuracy[0]["conditional_accuracy"] == accuracy[1]["conditional_accuracy"]
    assert (tmp_path / "jobs" / "report.html").is_file()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--only", "cvae"], "--only: expected RUN:SEED"),
        (["--only", "cvea:0"], "no run 'cvea'"),
        (["--only", "cvae:9"], "seed 9 is not one of its seeds"),
        (["--jobs", "0"], "--jobs: expected an integer >= 1"),
    ],
)
def test_experiment_refuses_bad_only_and_jobs(args, needle, tmp_path):
    result = cli("experiment", "vae-vs-cvae", "--dataset", "digits", "--out", tmp_path, *args)
    assert_user_error(result, needle)


def test_evaluate_with_registered_metrics(experiment, cache):
    run = experiment[0] / "cvae" / "seed-0"
    result = cli(
        "evaluate",
        run,
        "--metrics",
        "neg_elbo,iw_nll,fid,conditional_accuracy",
        "--iw-samples",
        "20",
        "--samples",
        "500",
        "--json",
    )
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["iw_nll"] < report["neg_elbo"]
    assert report["fid"] > 0 and report["fid_second_judge"] > 0
    on = report["computed_on"]
    assert on["iw_nll"]["k"] == 20 and on["iw_nll"]["examples"] == 297
    assert on["fid"]["samples"] == 500 and on["fid"]["examples"] == 297
    assert on["fid"]["classifier"] == on["conditional_accuracy"]["classifier"]
    # the cross-check: the same samples in the second judge's features, both judges named
    assert on["fid_second_judge"] == on["fid"]
    assert on["fid"]["second_classifier"].startswith("second_classifier-sha256:")
    # conditional accuracy's cross-check: the same samples judged by that second judge
    assert on["conditional_accuracy"]["second_classifier"] == on["fid"]["second_classifier"]
    second_per_class = on["conditional_accuracy"]["second_judge_per_class"]
    assert len(second_per_class) == 10
    assert report["conditional_accuracy_second_judge"] == pytest.approx(
        sum(second_per_class) / 10, abs=1e-3
    )
    assert on["neg_elbo"]["split"] == "test"
    text = cli("evaluate", run, "--metrics", "iw_nll", "--iw-samples", "5")
    assert text.code == 0 and "iw_nll: split test, examples 297, k 5" in text.out


def test_evaluate_metric_errors_are_one_line(experiment, cache):
    vae = experiment[0] / "vae" / "seed-0"
    assert_user_error(cli("evaluate", vae, "--metrics", "fidd"), "fidd", "did you mean")
    assert_user_error(
        cli("evaluate", vae, "--metrics", "conditional_accuracy"), "not class-conditional"
    )
    assert_user_error(
        cli("evaluate", vae, "--metrics", "iw_nll", "--iw-samples", "0"), "iw_samples"
    )


def test_experiment_errors(tmp_path, monkeypatch):
    assert_user_error(cli("experiment", "vae-vs-cvea", "--out", tmp_path), "vae-vs-cvae")
    from genae import experiments

    slot = tmp_path / "defs"
    slot.mkdir()
    (slot / "planned.toml").write_text(
        'name = "planned"\n[[runs]]\nname = "x"\nmodel = "not-yet-a-model"\n'
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS_DIR", slot)
    assert_user_error(
        cli("experiment", "planned", "--out", tmp_path / "o"), "needs model 'not-yet-a-model'"
    )
    assert not (tmp_path / "o").exists()


def write_run(run_dir, seed, history, evaluation=None):
    """A run directory written by hand: config.json, metrics.jsonl (and evaluation.json)."""
    from genae.training import rundir

    run_dir.mkdir(parents=True)
    train = {"dataset": "digits", "epochs": len(history), "seed": seed, "lr": 0.001}
    train.update(batch_size=100, lr_schedule="constant", binarize=False, labels="all")
    config = {"run_format": rundir.RUN_FORMAT, "model": "vae", "model_config": {}}
    config.update(train=train, data_spec={"shape": [1, 8, 8], "num_classes": 10})
    (run_dir / "config.json").write_text(json.dumps(config))
    rows = [dict(epoch=i + 1, **row) for i, row in enumerate(history)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if evaluation is not None:
        (run_dir / "evaluation.json").write_text(json.dumps(evaluation))
    return run_dir


def test_claims_compare_runs_bound_values_and_beat_a_baseline_of_the_same_run(tmp_path):
    """One seed: final claims read the last row's test_* values (evaluation.json over them),
    epoch claims that epoch's val_* values."""
    from genae.claims import Claim, check_claims
    from genae.report import read_run

    a = write_run(
        tmp_path / "a",
        0,
        [{"val_loss": 3.0}, {"val_loss": 9.0, "test_loss": 1.0, "test_acc": 0.7, "loss": 0.1}],
        evaluation={"examples": 5, "kmeans": 0.6},
    )
    b = write_run(tmp_path / "b", 0, [{"val_loss": 2.0}, {"test_loss": 0.5, "test_acc": 0.8}])
    runs = {"a": [read_run(a)], "b": [read_run(b)]}
    claims = [
        {"metric": "loss", "epoch": 1, "lower": "b", "than": "a"},  # val 2.0 < 3.0
        {"metric": "loss", "lower": "a", "than": "b"},  # test 1.0 < 0.5 is false
        {"run": "b", "metric": "acc", "at_least": 0.8},
        {"run": "a", "metric": "acc", "at_least": 0.75},
        {"run": "a", "metric": "acc", "exceeds": "kmeans"},  # test 0.7 > 0.6 (evaluation.json)
        {"run": "b", "metric": "acc", "exceeds": "kmeans"},  # b has no k-means: unchecked
        {"run": "gone", "metric": "acc", "at_most": 1.0},
    ]
    claims = [Claim.parse(entry, "test") for entry in claims]
    outcomes = check_claims(claims, runs)
    assert [o.ok for o in outcomes] == [True, False, True, False, True, None, None]
    assert outcomes[0].detail == "validation loss at epoch 1: b 2.0000; a 3.0000"
    assert outcomes[4].detail == "a: test acc 0.7000; kmeans 0.6000"
    assert outcomes[4].seeds == (0,) and outcomes[4].judged_on == "mean"


def seeded_runs(root):
    """Two runs of three seeds each, with final test values whose means and sds are known:
    a: acc 0.70, 0.80, 0.90 (mean 0.8, sd 0.1); b: acc 0.75, 0.76, 0.77 (mean 0.76, sd 0.01)."""
    for name, values in {"a": (0.70, 0.80, 0.90), "b": (0.75, 0.76, 0.77)}.items():
        for seed, acc in zip((0, 1, 2), values):
            history = [{"val_acc": acc - 0.1}, {"val_acc": acc, "test_acc": acc}]
            write_run(root / name / f"seed-{seed}", seed, history)
    return [root / "a", root / "b"]


@pytest.mark.parametrize(
    ("judged_on", "ok", "per_seed"),
    [("mean", True, []), ("every_seed", False, [(0, False), (1, True), (2, True)])],
)
def test_claims_across_seeds_are_judged_on_the_mean_or_on_every_seed(
    tmp_path, judged_on, ok, per_seed
):
    from genae.claims import Claim
    from genae.report import build_report

    claims = [
        Claim.parse(
            {"text": "a beats b", "metric": "acc", "lower": "b", "than": "a", "judged_on": j},
            "test",
        )
        for j in (judged_on,)
    ] + [Claim.parse({"run": "a", "metric": "acc", "at_least": 0.75, "judged_on": judged_on}, "t")]
    page = tmp_path / "report.html"
    outcomes = build_report(seeded_runs(tmp_path), page, claims=claims)
    # mean: 0.76 < 0.80 holds; every seed: seed 0 has 0.75 < 0.70, false
    assert outcomes[0].ok is ok and outcomes[0].judged_on == judged_on
    assert [(s, o) for s, o in outcomes[0].per_seed] == per_seed
    assert outcomes[0].seeds == (0, 1, 2)
    assert outcomes[0].detail.startswith(
        "test acc: b mean 0.7600 ± 0.0100 (0.7500, 0.7600, 0.7700); "
        "a mean 0.8000 ± 0.1000 (0.7000, 0.8000, 0.9000)"
    )
    # a's acc: mean 0.8 >= 0.75 holds; seed 0 (0.70) does not
    assert outcomes[1].ok is (judged_on == "mean")
    assert outcomes[0].to_json()["per_seed"] == [{"seed": s, "ok": o} for s, o in per_seed]
    text = page.read_text()
    judged = "mean over 3 seeds" if judged_on == "mean" else "every seed (3)"
    assert f"<td>{judged}</td>" in text
    if judged_on == "every_seed":
        assert "seed 0 ✘, seed 1 ✔, seed 2 ✔" in text and "fails for seed 0" in text


def test_report_shows_each_final_metric_as_mean_and_sd_over_seeds(tmp_path):
    from genae.report import build_report

    page = tmp_path / "report.html"
    build_report(seeded_runs(tmp_path), page)
    text = page.read_text()
    assert "0.8000 ± 0.1000 <span class='seeds'>(0.7000, 0.8000, 0.9000)</span>" in text
    assert "0.7600 ± 0.0100 <span class='seeds'>(0.7500, 0.7600, 0.7700)</span>" in text
    assert '<td class="num">0, 1, 2</td>' in text  # the seeds column
    assert "Trained with 2 epochs, Adam (lr 0.001, batch 100), seeds 0, 1, 2." in text
    # the per-epoch table is the validation curve, averaged over the seeds: a epoch 1 is 0.7
    assert "<h2>Validation acc per epoch</h2>" not in text  # acc is not a curve metric
    # one seed: the value alone
    one = tmp_path / "one.html"
    build_report([tmp_path / "a" / "seed-1"], one)
    assert ">0.8000<" in one.read_text() and "±" not in one.read_text()


def test_tiny_experiment_runs_every_seed_reuses_and_resumes(tmp_path, monkeypatch):
    """A 2-seed experiment on digits through run_experiment: a run directory per seed, the
    report's mean ± sd from the seeds' own metrics.jsonl, claims of both kinds, then a rerun
    that reuses both seeds and a longer one that resumes both."""
    import statistics

    from genae import experiments

    (tmp_path / "tiny.toml").write_text(
        """name = "tiny"
version = 1
title = "tiny"
description = "A VAE and a CVAE."
dataset = "digits"
seeds = [0, 1]

[train]
epochs = 1
batch_size = 100
snapshot_epochs = [1]

[[runs]]
name = "vae"
model = "vae"
model_config = { hidden = [32], latent_dim = 2 }

[[runs]]
name = "cvae"
model = "cvae"
model_config = { hidden = [32], latent_dim = 2 }

[[expect]]
text = "the CVAE fits better, on the mean"
metric = "neg_elbo"
lower = "cvae"
than = "vae"

[[expect]]
text = "the CVAE fits better, seed by seed"
judged_on = "every_seed"
metric = "neg_elbo"
lower = "cvae"
than = "vae"
"""
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS_DIR", tmp_path)
    out = tmp_path / "out"
    report = experiments.run_experiment("tiny", out, progress=False)
    finals = {}
    for run in ("vae", "cvae"):
        finals[run] = []
        for seed in (0, 1):
            rows = (out / run / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()
            last = json.loads(rows[-1])
            finals[run].append(last["test_neg_elbo"])
    text = report.read_text()
    for values in finals.values():
        mean, sd = statistics.fmean(values), statistics.stdev(values)
        each = ", ".join(f"{v:.2f}" for v in values)  # nats: 2 decimals for mean, sd and each
        assert f"{mean:.2f} ± {sd:.2f} <span class='seeds'>({each})</span>" in text
    summary = json.loads((out / "experiment.json").read_text())
    on_mean, on_every = summary["expectations"]
    assert on_mean["judged_on"] == "mean" and on_mean["per_seed"] == []
    assert on_mean["ok"] == (statistics.fmean(finals["cvae"]) < statistics.fmean(finals["vae"]))
    assert on_every["judged_on"] == "every_seed"
    expected = [{"seed": s, "ok": finals["cvae"][s] < finals["vae"][s]} for s in (0, 1)]
    assert on_every["per_seed"] == expected
    assert on_every["ok"] == all(e["ok"] for e in expected)
    assert (
        "Trained with 1 epoch, Adam (lr 0.001, batch 100), validation split 150, seeds 0, 1."
        in text
    )

    with redirect_stderr(io.StringIO()) as err:
        experiments.run_experiment("tiny", out, progress=False)
    assert err.getvalue().count("reusing") == 4
    with redirect_stderr(io.StringIO()) as err:
        experiments.run_experiment("tiny", out, progress=False, epochs=2)
    assert err.getvalue().count("resuming") == 4
    for run in ("vae", "cvae"):
        for seed in (0, 1):
            rows = (out / run / f"seed-{seed}" / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    assert "Trained with 2 epochs" in report.read_text()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("seeds = []\n", "'seeds': expected a non-empty list of distinct integers >= 0"),
        ("seeds = [0, 0]\n", "'seeds': expected a non-empty list"),
        ('seeds = "0"\n', "'seeds': expected a non-empty list"),
        ("[train]\nseed = 1\n", "[train]: 'seed': set the top-level 'seeds = [...]' instead"),
    ],
)
def test_experiment_seeds_are_checked_when_loaded(tmp_path, monkeypatch, toml, message):
    from genae import experiments
    from genae.errors import ConfigError

    (tmp_path / "e.toml").write_text(f'name = "e"\n{toml}[[runs]]\nname = "x"\nmodel = "vae"\n')
    monkeypatch.setattr(experiments, "EXPERIMENTS_DIR", tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        experiments.load_experiment("e")


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ('metric = "acc"\nrun = "x"\nexceeds = "kmeans"', None),
        ('metric = "acc"\nrun = "y"\nexceeds = "kmeans"', "names run 'y'"),
        ('metric = "acc"\nlower = "x"\nthan = "z"', "names run 'z'"),
        ('metric = "acc"\nrun = "x"', "expected 'lower'/'than', 'exceeds'"),
        ('run = "x"\nat_least = 1', "expected a 'metric' name"),
        (
            'metric = "acc"\nrun = "x"\nat_least = 1\njudged_on = "median"',
            "'judged_on': expected 'mean' or 'every_seed', got 'median'",
        ),
    ],
)
def test_experiment_claims_are_checked_when_loaded(tmp_path, monkeypatch, claim, message):
    from genae import experiments
    from genae.errors import ConfigError

    (tmp_path / "e.toml").write_text(
        f'name = "e"\n[[runs]]\nname = "x"\nmodel = "vae"\n[[expect]]\n{claim}\n'
    )
    monkeypatch.setattr(experiments, "EXPERIMENTS_DIR", tmp_path)
    if message is None:
        assert experiments.load_experiment("e").expect[0].exceeds == "kmeans"
    else:
        with pytest.raises(ConfigError, match=re.escape(message)):
            experiments.load_experiment("e")


def test_shipped_experiments_parse():
    from genae import experiments

    names = experiments.available()
    shipped = ("vae-vs-cvae", "m2-vs-m1m2", "m2-vs-m3-unsupervised", "vae-vs-dfc", "aae-priors")
    for name in (*shipped, "caae-attributes"):
        assert name in names
        assert experiments.load_experiment(name).runs


def test_every_shipped_experiment_has_valid_run_configs():
    """A misspelt or out-of-range setting in a shipped TOML would only surface an hour into
    `genae experiment`; every run's training and model config must validate now."""
    from genae import experiments
    from genae.config import TrainConfig, from_mapping
    from genae.models.registry import model_class

    for name in experiments.available():
        experiment = experiments.load_experiment(name)
        assert experiment.version >= 1, f"{name} is still a slot"
        for run in experiment.runs:
            train = experiments.train_config_of(experiment, run, experiment.dataset)
            from_mapping(TrainConfig, train, where=f"{name}/{run.name} train").validate()
            config_class = model_class(run.model).config_class
            config = from_mapping(config_class, run.model_config, where=f"{name}/{run.name}")
            config.validate()


def test_report_command(experiment, tmp_path):
    out = experiment[0]
    page = tmp_path / "r.html"
    result = cli("report", out / "vae", out / "cvae", "--out", page, "--title", "two runs")
    assert result.code == 0, result.err
    text = page.read_text()
    assert "<title>two runs</title>" in text and 'src="file:' not in text
    assert text.count('src="data:image/png;base64,') >= 6  # 4 grids, a curve, 2 latent plots
    assert_user_error(cli("report", out / "vae", "--out", tmp_path / "r.txt"), "r.txt")
    assert_user_error(cli("report", tmp_path / "none", "--out", page), "none")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(experiment, tmp_path):
    page = experiment[0] / "report.html"
    url = page.resolve().as_uri()
    common = [CHROMIUM, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    check = re.search(r'id="image-check"[^>]*', dom.stdout)
    assert check, "the page's image check did not run"
    images = int(re.search(r'data-images="(\d+)"', check.group(0)).group(1))
    broken = int(re.search(r'data-broken="(-?\d+)"', check.group(0)).group(1))
    # 4 sample grids, a curve, 2 latent plots, the CVAE's class grid
    assert broken == 0 and images >= 8
    for heading in ("Claims", "Samples by epoch", "Final metrics", "Pictures", "Configurations"):
        assert f"<h2>{heading}</h2>" in dom.stdout
    assert dom.stdout.count("<table") >= 4

    shot = tmp_path / "shot.png"
    render = subprocess.run(
        [*common, "--window-size=1366,900", f"--screenshot={shot}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert render.returncode == 0 and shot.exists(), render.stderr[-2000:]
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape == (900, 1366)
    assert pixels.std() > 10  # text and pictures, not a blank page


def test_report_shows_each_conditional_models_per_class_table_beside_its_grid(tmp_path):
    """Per class: the mean ± sd over seeds of the samples judged that class and of the
    reconstructions judged it (the ceiling), with the first seed's class grid beside them."""
    from genae.report import build_report
    from genae.training import rundir
    from genae.viz.grids import save_grid

    per_seed = {0: ([0.5, 0.9], [0.75, 1.0]), 1: ([0.7, 0.7], [0.85, 0.9])}
    for seed, (samples, ceiling) in per_seed.items():
        about = {"per_class": samples, "reconstruction_judged_per_class": ceiling, "prior": "p"}
        evaluation = {
            "conditional_accuracy": sum(samples) / 2,
            "reconstruction_judged_accuracy": sum(ceiling) / 2,
            "computed_on": {"conditional_accuracy": about},
        }
        run = write_run(tmp_path / "cvae" / f"seed-{seed}", seed, [{"val_acc": 0.5}], evaluation)
        pictures = run / rundir.PICTURES_DIR
        pictures.mkdir()
        save_grid(torch.full((2, 1, 8, 8), 0.5), 1, pictures / "class_grid.png")
    write_run(tmp_path / "vae" / "seed-0", 0, [{"val_acc": 0.5}])
    page = tmp_path / "report.html"
    build_report([tmp_path / "cvae", tmp_path / "vae"], page)
    html = page.read_text()
    section = html.split("<h2>Conditional generation, per class</h2>")[1].split("<h2>")[0]
    assert "<h3>cvae</h3>" in section and "<h3>vae</h3>" not in section
    assert "samples, one row per class" in section and "data:image/png;base64," in section
    # class 0: samples 0.5, 0.7 -> 0.6 ± 0.1414; ceiling 0.75, 0.85 -> 0.8 ± 0.0707
    assert "0.6000 ± 0.1414 <span class='seeds'>(0.5000, 0.7000)</span>" in section
    assert "0.8000 ± 0.0707 <span class='seeds'>(0.7500, 0.8500)</span>" in section
    # class 1: samples 0.9, 0.7; overall: 0.7, 0.7 and 0.875, 0.875
    assert "0.8000 ± 0.1414 <span class='seeds'>(0.9000, 0.7000)</span>" in section
    assert "0.7000 ± 0.0000" in section and "0.8750 ± 0.0000" in section
    assert "prior p" in section
    # the grid is shown once, in its section, not again under Pictures
    assert html.count("samples, one row per class</figcaption>") == 1


def test_a_claim_on_a_collapsed_run_fails_and_says_why(tmp_path):
    """A run whose final evaluation was reported collapsed is not a result: a claim about it
    fails, naming the run and the reason, even where its numbers would pass."""
    from genae.claims import Claim
    from genae.report import build_report

    for seed in (0, 1):
        history = [{"val_acc": 0.9, "test_acc": 0.9}]
        if seed == 1:
            history[-1]["test_collapsed"] = "collapsed: code_sensitivity 1e-10"
        write_run(tmp_path / "a" / f"seed-{seed}", seed, history)
    claim = Claim.parse({"run": "a", "metric": "acc", "at_least": 0.5}, "t")
    page = tmp_path / "report.html"
    [outcome] = build_report([tmp_path / "a"], page, claims=[claim])
    assert outcome.ok is False
    assert outcome.detail == "a seed 1 collapsed: code_sensitivity 1e-10"
    # evaluation.json's verdict (a later `genae evaluate --save`) counts the same way
    (tmp_path / "a" / "seed-0" / "evaluation.json").write_text(
        json.dumps({"acc": 0.9, "collapsed": "collapsed: x"})
    )
    [outcome] = build_report([tmp_path / "a"], page, claims=[claim])
    assert outcome.detail.startswith("a seed 0 collapsed: x; a seed 1")
